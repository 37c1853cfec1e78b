// bench/html-report: what --html costs. 1,000 runs of a one-local-machine test (1 in 20
// flaky, --retries 1) through the orchestrator with --json only (the baseline) and with
// --json --html, in the same process; then the page itself: its size, and how long Debian's
// headless Chromium takes to load it and run its filter.
//   npm run bench:html            (HP_BENCH_SCALE=0.1 for a quick look; HP_BENCH_SMOKE=1: 0.02, 1 page load)
import { rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { applyV8Flags } from "../orchestrator/v8-flags.ts";
import { runCommand } from "../orchestrator/commands/run.ts";
import { knob, SMOKE } from "./smoke.ts";
import { scratchDir } from "./scratch.ts";
import { fmt, printTable } from "./table.ts";

applyV8Flags(); // as the CLI runs (orchestrator/v8-flags.ts)

const scale = knob("HP_BENCH_SCALE", 1, 0.02);
const RUNS = Math.max(20, Math.round(1000 * scale));
const JOBS = 2;
const fixture = fileURLToPath(new URL("./fixtures/flake/one-in-twenty.vmtest.ts", import.meta.url));
const scratch = scratchDir("hp-bhtml-");

/** One run in this process; `afterMs` is from the last run's end to runCommand's return (reports are written then). */
async function measure(name: string, html: boolean): Promise<{ ms: number; afterMs: number; page?: string }> {
  let lastEnd = 0;
  const page = html ? join(scratch, name, "report.html") : undefined;
  const t0 = performance.now();
  const status = await runCommand({
    paths: [fixture],
    jobs: JOBS,
    backend: "local",
    repeat: RUNS,
    retries: 1,
    untilFail: false,
    quiet: true,
    abortGrace: 10,
    logDir: join(scratch, name),
    terminal: false,
    json: join(scratch, name, "report.json"),
    ...(page ? { html: page } : {}),
    reporters: [{ report: (e) => void (e.kind === "run-end" && (lastEnd = performance.now())) }],
  });
  if (status !== 0) throw new Error(`${name}: exit status ${status}`);
  const end = performance.now();
  return { ms: end - t0, afterMs: end - lastEnd, ...(page ? { page } : {}) };
}

const rows: (string | number)[][] = [];
const json = await measure("json", false);
const html = await measure("html", true);
const ratio = (a: number, b: number) => `${fmt(a / b, 2)}x`;
rows.push([`--repeat ${RUNS} --retries 1 --json (baseline)`, RUNS, fmt(json.ms / 1000, 2), fmt(json.afterMs, 0), "1.00x", "—"]);
rows.push([`--repeat ${RUNS} --retries 1 --json --html`, RUNS, fmt(html.ms / 1000, 2), fmt(html.afterMs, 0), ratio(html.afterMs, json.afterMs), `${fmt(statSync(html.page!).size / 1024, 0)} KiB`]);
printTable(
  "bench/html-report: the HTML report's cost at the end of a run (same process, same runs; 1 in 20 runs flaky). After the last run: summary, reports, pool teardown",
  ["mode", "runs", "wall s", "after last run ms", "after last run vs baseline", "page"],
  rows,
);

// The page in a real browser: load, then the filter (only failures → all again).
const browser = await chromium.launch({ executablePath: process.env.HALTPOINT_TEST_CHROMIUM ?? "/usr/bin/chromium" });
const loads: number[] = [];
const filters: number[] = [];
const LOADS = SMOKE ? 1 : 5;
for (let i = 0; i < LOADS; i++) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const t0 = performance.now();
  await page.goto(pathToFileURL(html.page!).href, { waitUntil: "load" });
  loads.push(performance.now() - t0);
  const t1 = performance.now();
  await page.getByLabel("flaky", { exact: true }).check();
  await page.locator("#shown", { hasText: `showing ${Math.floor(RUNS / 20)} of ${RUNS} runs` }).waitFor();
  filters.push(performance.now() - t1);
  await context.close();
}
await browser.close();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
printTable(`the page in headless Chromium (Debian's, playwright-core), ${LOADS} load(s)`, ["runs on the page", "load median ms", "load max ms", "filter to flaky median ms"], [
  [RUNS, fmt(median(loads), 0), fmt(Math.max(...loads), 0), fmt(median(filters), 0)],
]);
rmSync(scratch, { recursive: true, force: true });
