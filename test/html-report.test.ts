// The HTML report (--html), opened in a real headless Chromium (Debian's, driven by
// playwright-core): offline, every test and run shown, a real qemu guest's failure with
// its screenshot, the timeline, the flake chart, halted time, filters, merge, Ctrl-C.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { haltpoint, watchOutput } from "./helpers/cli.ts";
import { processesMatching } from "./helpers/machine-context.ts";
import { emptied } from "./helpers/settled.ts";
import { closeBrowser, openPage, type OpenedPage } from "./helpers/browser.ts";
import { wilsonInterval } from "../orchestrator/flake-stats.ts";
import { percent } from "../orchestrator/reporters/format.ts";
import { html, relativeUrl } from "../orchestrator/reporters/html/html-template.ts";
import { ImageBudget, TAIL_LINES, attemptArtifacts } from "../orchestrator/reporters/html/artifacts.ts";
import { runSection } from "../orchestrator/reporters/html/run-section.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const dir = tempDir("hp-html-");
after(closeBrowser);

/** Nothing but the page's own file and data: URIs was requested; no script error, no CSP violation. */
function assertOffline(p: OpenedPage): void {
  assert.ok(p.requests.length >= 1, "the page itself was requested");
  assert.deepEqual(p.requests.filter((u) => !u.startsWith("file:") && !u.startsWith("data:")), [], "no request leaves the file system");
  assert.deepEqual(p.errors, [], "no script error or blocked resource");
}

const visibleKeys = (p: OpenedPage) => p.page.locator("section.run:visible").evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.key!));

/** Every relative link of the page points at a file or directory that exists. */
async function assertLinksResolve(p: OpenedPage, pageFile: string): Promise<number> {
  const hrefs = await p.page.locator("a[href]").evaluateAll((els) => els.map((e) => e.getAttribute("href")!));
  const files = hrefs.filter((h) => !h.startsWith("#"));
  for (const h of files) {
    assert.ok(!/^[a-z]+:/i.test(h) && !h.startsWith("/"), `link ${h} is relative`);
    const target = resolve(dirname(pageFile), decodeURIComponent(h));
    assert.ok(existsSync(target), `link ${h} resolves to ${target}, which exists`);
  }
  return files.length;
}

test("html template: interpolations are escaped, nested templates are not escaped twice, paths are URL-encoded", () => {
  const evil = `"><script>alert(1)</script>&`;
  assert.equal(html`<p title="${evil}">${evil}</p>`.text, `<p title="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;">&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;</p>`);
  assert.equal(html`<ul>${["a<", "b"].map((x) => html`<li>${x}</li>`)}</ul>`.text, "<ul><li>a&lt;</li><li>b</li></ul>");
  assert.equal(html`${null}${undefined}${false}${0}`.text, "0");
  assert.equal(relativeUrl("../logs/login#3/out/a b?.png"), "../logs/login%233/out/a%20b%3F.png");
});

test("a large console log is cut to its tail in the page, with a relative link to the whole file", async () => {
  const logDir = join(dir, "big", "t#1");
  mkdirSync(join(logDir, "out"), { recursive: true });
  const lines = Array.from({ length: 5000 }, (_, i) => `console line ${i + 1} <${"x".repeat(40)}>`);
  writeFileSync(join(logDir, "m.console.log"), lines.join("\n") + "\n");
  writeFileSync(join(logDir, "run.jsonl"), JSON.stringify({ level: 50, time: "2026-12-01T00:00:00.000Z", machine: "m", msg: "boom <i>" }) + "\n");
  const a = await attemptArtifacts(logDir, dir, true, new ImageBudget());
  const c = a.consoles[0]!;
  assert.equal(c.machine, "m");
  assert.equal(c.truncated, true);
  assert.equal(c.lines.length, TAIL_LINES);
  assert.deepEqual(c.lines, lines.slice(-TAIL_LINES), "exactly the last lines, none cut in half");
  assert.equal(c.href, "big/t#1/m.console.log");
  assert.deepEqual(a.runLog!.entries, [{ time: "2026-12-01T00:00:00.000Z", level: "error", machine: "m", msg: "boom <i>" }]);
  const section = (await runSection(
    { name: "t", file: "t.vmtest.ts", retries: 0, runs: [], notRun: [], stats: { runs: 1, attempts: 1, failures: 1, flakyRuns: 0, failedRuns: 1, failureRate: 1, wilson95: { low: 0, high: 1 }, groups: [] } },
    { run: 1, key: "t#1", outcome: "failed", startedAt: "2026-12-01T00:00:00.000Z", durationMs: 5, logDir, attempts: [{ attempt: 1, outcome: "failed", startedAt: "2026-12-01T00:00:00.000Z", durationMs: 5, logDir, error: { name: "Error", message: "boom <i>" } }] },
    { pageDir: dir, full: true, images: new ImageBudget(), order: 0 },
  )).text;
  assert.match(section, new RegExp(`last ${TAIL_LINES} lines of \\d+\\.\\d KiB; the whole file: <a href="big/t%231/m\\.console\\.log">`));
  assert.ok(!section.includes("console line 4800 <"), "markup in a log is escaped");
  assert.ok(section.includes("console line 5000 &lt;x"));
  assert.ok(!section.includes("console line 4800 &lt;"), "lines before the tail are not in the page");
});

const qemuPage = join(dir, "qemu.html");
const qemuJson = join(dir, "qemu.json");

test("a run's page: every test, a qemu guest's error and screenshot, one timeline bar per run, filters; works offline and without JS", async (t) => {
  const r = await haltpoint(["run", "test/fixtures/html/qemu", "--jobs", "2", "--log-dir", join(dir, "logs-qemu"), "--json", qemuJson, "--html", qemuPage], { timeout: 600_000 });
  assert.equal(r.exitCode, 1, r.all);
  const report = JSON.parse(readFileSync(qemuJson, "utf8"));
  const runKeys = report.tests.flatMap((x: { runs: { key: string }[] }) => x.runs.map((y) => y.key)).sort();
  assert.deepEqual(runKeys, ["passes#1", "screenshot-fail#1"]);

  const p = await openPage(qemuPage);
  assertOffline(p);
  const { page } = p;
  assert.match(await page.locator("#summary").innerText(), /1 passed, 1 failed, 0 flaky, 0 not run, 0 load errors in .* exit status 1/);
  assert.match(await page.locator("table.hosts").innerText(), /QEMU emulator version \d+\.\d+/);
  assert.deepEqual((await page.locator("table.tests tr.test").evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.test))).sort(), ["passes", "screenshot-fail"]);
  assert.deepEqual((await visibleKeys(p)).sort(), runKeys);

  // The failure: its message as text (the <b> in the command is not markup), its stack.
  const failed = page.locator("section.run.failed");
  assert.equal(await failed.count(), 1);
  const text = await failed.innerText();
  assert.ok(text.includes("machine guest: command `echo 'the guest says <b>no</b>' >&2; exit 4` failed (exit code 4)"), text);
  assert.match(text, /at .*screenshot-fail\.vmtest\.ts:\d+/, "the stack is shown");
  assert.equal(await failed.locator("b").count(), 0, "no markup from the error message");
  // Its screenshot, as an image that decoded, the size QEMU wrote.
  const png = readFileSync(join(dir, "logs-qemu", "screenshot-fail#1", "out", "before-failure.png"));
  const img = failed.locator('img[alt="screenshot before-failure.png"]');
  const size = await img.evaluate((e) => [(e as HTMLImageElement).complete, (e as HTMLImageElement).naturalWidth, (e as HTMLImageElement).naturalHeight]);
  assert.deepEqual(size, [true, png.readUInt32BE(16), png.readUInt32BE(20)], "the screenshot renders at its size");
  assert.ok(png.readUInt32BE(16) > 0);
  // The copied file, the console (collapsed, its tail inside), the log lines.
  assert.equal(await failed.locator("a", { hasText: "copied.txt" }).getAttribute("href"), "logs-qemu/screenshot-fail%231/out/copied.txt");
  const guestConsole = failed.locator('details.console[data-machine="guest"]');
  assert.equal(await guestConsole.getAttribute("open"), null, "the console is collapsed");
  assert.match(await failed.locator("table.runlog").innerText(), /taking a screenshot/);
  assert.ok((await assertLinksResolve(p, qemuPage)) >= 5, "log, console, screenshot and file links");

  // The timeline: one bar per run, each in the slot the JSON report says ran it.
  const bars = await page.locator("svg.timeline g.bar").evaluateAll((els) => els.map((e) => (e as SVGGElement).dataset.key!));
  assert.deepEqual(bars.sort(), runKeys);
  const slots = new Set(report.tests.flatMap((x: { runs: { attempts: { slot: number }[] }[] }) => x.runs.map((y) => y.attempts[0]!.slot)));
  assert.deepEqual([...slots].sort(), [0, 1], "the two runs started at once, in the two slots of --jobs 2");
  assert.equal(await page.locator('svg.timeline g.bar[data-key="screenshot-fail#1"] rect.failed').count(), 1);

  // Filters: only failures after clicking "failed"; by name; failures first.
  assert.equal(await page.locator("#filters").isVisible(), true, "the script shows the filters");
  assert.deepEqual(await visibleKeys(p), ["screenshot-fail#1", "passes#1"], "failures first");
  await page.getByLabel("failed", { exact: true }).check();
  assert.deepEqual(await visibleKeys(p), ["screenshot-fail#1"]);
  assert.match(await page.locator("#shown").innerText(), /showing 1 of 2 runs/);
  await page.getByLabel("all", { exact: true }).check();
  await page.getByPlaceholder("test name").fill("pass");
  assert.deepEqual(await visibleKeys(p), ["passes#1"]);
  await page.getByPlaceholder("test name").fill("");

  const shot = join(dir, "qemu-page.png");
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`page screenshot: ${shot}`);
  await p.context.close();

  // Without JavaScript: the summary and every run, failures first; no filter bar.
  const nojs = await openPage(qemuPage, { javaScript: false });
  assertOffline(nojs);
  assert.match(await nojs.page.locator("#summary").innerText(), /1 passed, 1 failed/);
  assert.equal(await nojs.page.locator("#filters").isVisible(), false);
  assert.deepEqual(await visibleKeys(nojs), ["screenshot-fail#1", "passes#1"]);
  assert.equal(await nojs.page.locator("section.run.failed img").count(), 1);
  await nojs.context.close();
});

const localPage = join(dir, "local.html");
const localJson = join(dir, "local.json");

test("a repeated flaky test: the failure rate with its Wilson interval plotted, its failure group, flaky runs as failed-then-passed bars", async () => {
  const r = await haltpoint(["run", "test/fixtures/html/local", "--repeat", "4", "--retries", "1", "--log-dir", join(dir, "logs-local"), "--json", localJson, "--html", localPage]);
  assert.equal(r.exitCode, 0, r.all);
  const p = await openPage(localPage);
  assertOffline(p);
  const { page } = p;
  // coin: runs 1 and 3 fail their first attempt: 2 failed attempts out of 6.
  const ci = wilsonInterval(2, 6);
  const row = page.locator('svg.flake-chart g.flake-row[data-test="coin"]');
  const label = await row.locator("text.value").textContent();
  assert.equal(label, `${percent(2 / 6)} (95% CI ${percent(ci.low)}–${percent(ci.high)}), 2/6 attempts failed`);
  // The dot sits at the rate, inside its whisker, and the whisker spans the interval's share of the axis.
  const [x1, x2, cx] = await row.evaluate((g) => [Number(g.querySelector("line.ci")!.getAttribute("x1")), Number(g.querySelector("line.ci")!.getAttribute("x2")), Number(g.querySelector("circle.rate")!.getAttribute("cx"))]);
  assert.ok(x1! < cx! && cx! < x2!, `dot ${cx} inside ${x1}–${x2}`);
  assert.ok(Math.abs((cx! - x1!) / (x2! - x1!) - (2 / 6 - ci.low) / (ci.high - ci.low)) < 0.01, "drawn to scale");
  const steady = page.locator('svg.flake-chart g.flake-row[data-test="steady <&> name"] text.value');
  assert.match((await steady.textContent())!, /^0% \(95% CI 0%–\d+\.\d%\), 0\/4 attempts failed$/);
  const groups = await page.locator("table.groups").innerText();
  assert.match(groups, /coin\s+2×\s+machine m: command `echo run N attempt N fails; exit N` failed \(exit code N\)/);
  assert.match(groups, /e\.g\. machine m: command `echo run 1 attempt 1 fails; exit 5` failed \(exit code 5\)/);

  // Bars: one per run (8); a flaky run's bar holds its failed attempt, then its passing one.
  assert.equal(await page.locator("svg.timeline g.bar").count(), 8);
  const coin1 = await page.locator('svg.timeline g.bar[data-key="coin#1"] rect').evaluateAll((els) => els.map((e) => e.getAttribute("class")));
  assert.deepEqual(coin1, ["failed", "passed"]);
  // The test name with markup characters is text; the flaky filter; the name filter.
  assert.ok((await page.locator("table.tests").innerText()).includes("steady <&> name"));
  await page.getByLabel("flaky", { exact: true }).check();
  assert.deepEqual(await visibleKeys(p), ["coin#1", "coin#3"]);
  await page.getByLabel("all", { exact: true }).check();
  await page.getByPlaceholder("test name").fill("STEADY");
  assert.deepEqual((await visibleKeys(p)).sort(), ["steady <&> name#1", "steady <&> name#2", "steady <&> name#3", "steady <&> name#4"]);
  await page.getByLabel("failures first").uncheck();
  await page.getByPlaceholder("test name").fill("coin");
  assert.deepEqual(await visibleKeys(p), ["coin#1", "coin#2", "coin#3", "coin#4"], "run order");
  await p.context.close();
});

test("merge --html: one page for the whole suite, each report's runs in their own timeline lanes", async (t) => {
  assert.ok(existsSync(qemuJson) && existsSync(localJson), "the two runs above wrote their reports");
  const merged = join(dir, "merged.html");
  const r = await haltpoint(["merge", qemuJson, localJson, "--html", merged]);
  assert.equal(r.exitCode, 1, r.all);
  const p = await openPage(merged);
  assertOffline(p);
  const { page } = p;
  assert.match(await page.locator("#summary").innerText(), /7 passed, 1 failed, 2 flaky, 0 not run/);
  assert.deepEqual((await page.locator("table.tests tr.test").evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.test))).sort(), ["coin", "passes", "screenshot-fail", "steady <&> name"]);
  assert.equal(await page.locator("section.run").count(), 10);
  assert.equal(await page.locator("svg.timeline g.bar").count(), 10);
  assert.deepEqual(await page.locator("svg.timeline text.block").allTextContents(), [qemuJson, localJson]);
  assert.equal(await page.locator("table.hosts tbody tr").count(), 2);
  // The log dirs are still here: the merged page embeds the screenshot and links the logs.
  assert.equal(await page.locator("section.run.failed img").count(), 1);
  await assertLinksResolve(p, merged);
  // docs/ci.md's picture of the page: its top (summary, tests, timeline, flake chart, the first failure).
  const shot = join(dir, "merged-page.png");
  await page.screenshot({ path: shot, fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1900 } });
  t.diagnostic(`page screenshot: ${shot}`);
  await p.context.close();
});

test("halted time shows as halted: a breakpoint released with haltpoint release", async () => {
  const pageFile = join(dir, "halt.html");
  const child = haltpoint(["run", "test/fixtures/html/halt", "--debug-hook", "--no-save-breakpoints", "--json", join(dir, "halt.json"), "--html", pageFile, "--log-dir", join(dir, "logs-halt")]);
  const out = watchOutput(child);
  const [, id] = await out.waitFor(/HALTED at breakpoint (\d+)/);
  await out.waitFor(/release: /);
  const rel = await haltpoint(["release", id!]);
  assert.equal(rel.exitCode, 0, rel.all);
  const r = await child;
  assert.equal(r.exitCode, 0, r.all);
  const json = JSON.parse(readFileSync(join(dir, "halt.json"), "utf8"));
  const halts = json.tests[0].runs[0].attempts[0].halts;
  assert.equal(halts.length, 1);
  assert.equal(halts[0].id, id);
  assert.equal(halts[0].kind, "breakpoint");
  const p = await openPage(pageFile);
  assertOffline(p);
  assert.equal(await p.page.locator('svg.timeline g.bar[data-key="pause#1"] rect.halted').count(), 1, "the halted span, hatched");
  assert.match(await p.page.locator('section.run[data-key="pause#1"] .halt').innerText(), new RegExp(`halted at breakpoint ${id} \\(debug\\.breakpoint\\(\\)\\) at .* for .*; released by haltpoint release`));
  await p.context.close();
});

test("Ctrl-C: the HTML report is written for what finished, whole", async () => {
  const pageFile = join(dir, "interrupted.html");
  const marker = `hp-html-int-${process.pid}`;
  const child = haltpoint(["run", "test/fixtures/interrupt", "--jobs", "2", "--html", pageFile, "--log-dir", join(dir, "logs-int")], { env: { HP_TEST_MARKER: marker } });
  const out = watchOutput(child);
  await out.waitFor(/must succeed: echo hanging now/);
  child.kill("SIGINT");
  const r = await child;
  assert.equal(r.exitCode, 130, r.all);
  // The sandbox's processes die with their process group; wait for them to be reaped.
  assert.deepEqual(await emptied(() => processesMatching(marker)), [], "no machine process left behind");
  assert.match(readFileSync(pageFile, "utf8"), /<\/html>\n$/, "written whole");
  const p = await openPage(pageFile);
  assertOffline(p);
  assert.match(await p.page.locator("table.facts").innerText(), /interrupted\s+yes/);
  assert.match(await p.page.locator('section.run[data-key="hang#1"]').innerText(), /interrupted \(SIGINT\)/);
  await p.context.close();
});
