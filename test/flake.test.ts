// Flake hunting: --until-fail, --retries (FLAKY), --flaky-fails, --stress-duration,
// flake statistics (Wilson interval, failure groups), GitHub annotations, colour rules.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { haltpoint, ROOT } from "./helpers/cli.ts";
import { Z95, flakeStats, wilsonInterval } from "../orchestrator/flake-stats.ts";
import { failureSignature, normalizeMessage } from "../orchestrator/failure-signature.ts";
import { noticeText } from "../orchestrator/reporters/failure-text.ts";
import { resultFromAttempts, type RunAttempt } from "../orchestrator/results.ts";
import type { PlannedRun, PlannedTest } from "../orchestrator/selection/plan.ts";
import { runCommand } from "../orchestrator/commands/run.ts";
import { colorEnabled } from "../orchestrator/reporters/colors.ts";
import { annotation, escapeData, escapeProperty, lineInFile } from "../orchestrator/reporters/github.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const tmp = () => tempDir("hp-flake-");
const near = (a: number, b: number, eps: number, what: string) => assert.ok(Math.abs(a - b) <= eps, `${what}: ${a} vs ${b}`);

test("the Wilson interval matches the closed formula and published values", () => {
  // The closed formula, written out independently: (p + z²/2n ± z·√(p(1-p)/n + z²/4n²)) / (1 + z²/n).
  const reference = (k: number, n: number) => {
    const z = 1.959963984540054;
    const p = k / n;
    const c = p + (z * z) / (2 * n);
    const h = z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
    const d = 1 + (z * z) / n;
    return { low: Math.max(0, (c - h) / d), high: Math.min(1, (c + h) / d) };
  };
  for (const [k, n] of [[0, 10], [3, 10], [10, 10], [50, 100], [1, 1000], [999, 1000], [7, 13]] as const) {
    const got = wilsonInterval(k, n);
    const want = reference(k, n);
    near(got.low, want.low, 1e-12, `${k}/${n} low`);
    near(got.high, want.high, 1e-12, `${k}/${n} high`);
    assert.ok(got.low <= k / n && k / n <= got.high, `${k}/${n}: the point estimate is inside`);
  }
  // Edges are exact: no failures → from 0; all failures → to 1.
  assert.equal(wilsonInterval(0, 10).low, 0);
  assert.equal(wilsonInterval(10, 10).high, 1);
  // 0/n: the upper bound is z²/(n+z²).
  near(wilsonInterval(0, 10).high, (Z95 * Z95) / (10 + Z95 * Z95), 1e-12, "0/10 high");
  // Published values (Newcombe 1998, Stat. Med. 17:857, table I, method 3 "score"), 4 decimals.
  for (const [k, n, low, high] of [
    [81, 263, 0.2553, 0.3662],
    [15, 148, 0.0624, 0.1605],
    [0, 20, 0, 0.1611],
    [1, 29, 0.0061, 0.1718],
  ] as const) {
    const got = wilsonInterval(k, n);
    near(got.low, low, 5e-5, `${k}/${n} low`);
    near(got.high, high, 5e-5, `${k}/${n} high`);
  }
  // Commonly quoted: 0/10 → [0, 27.75%], 3/10 → [10.78%, 60.32%], 50/100 → [40.38%, 59.62%].
  near(wilsonInterval(0, 10).high, 0.2775, 5e-5, "0/10");
  near(wilsonInterval(3, 10).low, 0.1078, 5e-5, "3/10 low");
  near(wilsonInterval(3, 10).high, 0.6032, 5e-5, "3/10 high");
  near(wilsonInterval(50, 100).low, 0.4038, 5e-5, "50/100 low");
  near(wilsonInterval(50, 100).high, 0.5962, 5e-5, "50/100 high");
  assert.deepEqual(wilsonInterval(0, 0), { low: 0, high: 1 }, "no trials: nothing known");
  assert.throws(() => wilsonInterval(11, 10), RangeError);
});

test("failure signatures: numbers, paths and hex ids normalised; one cause one signature", () => {
  assert.equal(normalizeMessage("machine m: command `ls /var/tmp/hp-x-3/data.21` failed (exit code 2)"), "machine m: command `ls <path>` failed (exit code N)");
  assert.equal(normalizeMessage("no answer on port 8004 from node 0x2fabc after 6.5 s"), "no answer on port N from node <hex> after N s");
  assert.equal(normalizeMessage("container 3f2a9c1e7b00 (id 3f2a9c1e-1234-4abc-8def-0123456789ab) gone"), "container <hex> (id <uuid>) gone");
  assert.equal(normalizeMessage("cannot open ./logs/run-7.txt or ~/x/y"), "cannot open <path> or <path>");
  assert.equal(normalizeMessage("1/3 and/or a decade"), "N/N and/or a decade", "a ratio is not a path; words are not hex");
  const a = failureSignature({ error: { name: "Error", message: "timeout after 31 s waiting for /run/a.sock\nconsole tail: 12345" } });
  const b = failureSignature({ error: { name: "Error", message: "timeout after 29 s waiting for /run/b.sock\nconsole tail: other" } });
  assert.equal(a, b, "later lines are not part of the signature");
  assert.equal(failureSignature({ reason: "global timeout of 5 s exceeded", error: { name: "Error", message: "x" } }), "global timeout of N s exceeded", "the orchestrator's reason comes first");
  assert.notEqual(a, failureSignature({ error: { name: "Error", message: "connection refused on port 22" } }));
});

test("flakeStats groups failed attempts by signature with their run numbers and one run's logs", () => {
  const t: PlannedTest = { file: "/t/x.vmtest.ts", name: "x", nodes: [], globalTimeout: 1, enableDebugHook: false };
  const at = (n: number, outcome: "passed" | "failed", message?: string): RunAttempt => ({
    attempt: n, outcome, startedAt: 0, durationMs: 1, logDir: `/logs/x#${n}`, ...(message ? { error: { name: "Error", message } } : {}),
  });
  const run = (i: number): PlannedRun => ({ key: `x#${i}`, test: t, index: i });
  const results = [
    resultFromAttempts(run(1), [at(1, "passed")]),
    resultFromAttempts(run(2), [at(1, "failed", "port 8002 closed")]),
    resultFromAttempts(run(3), [at(1, "failed", "disk /dev/vdb3 full"), at(2, "passed")]),
    resultFromAttempts(run(4), [at(1, "failed", "port 8004 closed")]),
  ];
  assert.equal(results[2]!.outcome, "flaky");
  const [s] = flakeStats(results);
  assert.equal(s!.runs, 4);
  assert.equal(s!.attempts, 5);
  assert.equal(s!.failures, 3);
  assert.equal(s!.flakyRuns, 1);
  assert.equal(s!.failedRuns, 2);
  assert.deepEqual([s!.low, s!.high], [wilsonInterval(3, 5).low, wilsonInterval(3, 5).high]);
  assert.deepEqual(
    s!.groups.map((g) => [g.signature, g.occurrences.map((o) => o.run)]),
    [["port N closed", [2, 4]], ["disk <path> full", [3]]],
  );
  assert.equal(s!.groups[0]!.occurrences[0]!.logDir, "/logs/x#1");
});

test("--until-fail: the run failing on its 3rd run is caught, and no run is admitted after it", async () => {
  const events: string[] = [];
  const status = await runCommand({
    paths: [join(ROOT, "test/fixtures/until-fail/slow-third.vmtest.ts")],
    jobs: 2,
    backend: "local",
    repeat: 50,
    untilFail: true,
    quiet: true,
    abortGrace: 5,
    logDir: join(tmp(), "logs"),
    terminal: false,
    reporters: [
      {
        report: (e) => {
          if (e.kind === "run-start") events.push(`start ${e.run.index}`);
          else if (e.kind === "run-end") events.push(`end ${e.result.run.index} ${e.result.outcome}`);
          else if (e.kind === "notice") events.push(`notice ${noticeText(e.notice)}`);
        },
      },
    ],
  });
  assert.equal(status, 1);
  const failedAt = events.indexOf("end 3 failed");
  assert.ok(failedAt >= 0, events.join("\n"));
  assert.equal(events[failedAt + 1], "notice --until-fail: slow-third#3 failed; starting no more runs");
  assert.deepEqual(events.slice(failedAt).filter((e) => e.startsWith("start")), [], "no run started after the failure:\n" + events.join("\n"));
  const started = events.filter((e) => e.startsWith("start")).length;
  assert.ok(started <= 4, `at most the failing run's neighbour was running beside it (${started} started)`);
  assert.equal(events.filter((e) => e.startsWith("end")).length, started, "every started run reported its end");
});

test("--until-fail with --debug-hook: the failing run halts, admission stops at once, the running ones end", async () => {
  const dir = tmp();
  const r = await haltpoint(
    ["run", "test/fixtures/until-fail/slow-third.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--until-fail", "--repeat", "50", "--jobs", "2", "--freeze-ttl", "2s", "--debug-port", "47600", "-q", "--json", join(dir, "r.json")],
    { timeout: 60_000 },
  );
  assert.equal(r.exitCode, 1, r.all);
  const halted = r.all.indexOf("slow-third#3: HALTED at breakpoint");
  const notice = r.all.indexOf("--until-fail: slow-third#3 failed; starting no more runs");
  const released = r.all.indexOf("slow-third#3: breakpoint");
  assert.ok(halted >= 0 && notice >= 0 && released > notice, "admission stopped when the run failed, not when its breakpoint was released:\n" + r.all);
  const report = JSON.parse(readFileSync(join(dir, "r.json"), "utf8"));
  const runs = report.tests[0].runs.map((x: { run: number }) => x.run);
  assert.ok(runs.length <= 4 && runs.includes(3), `runs: ${runs}`);
  assert.equal(report.summary.notRun, 50 - runs.length);
});

test("--retries: failed then passed is FLAKY (terminal, JSON, per-attempt logs); --flaky-fails fails the run", async () => {
  const dir = tmp();
  const r = await haltpoint(["run", "test/fixtures/retry/once.vmtest.ts", "--retries", "1", "--log-dir", join(dir, "logs"), "--json", join(dir, "r.json")]);
  assert.equal(r.exitCode, 0, "a flaky run passes the suite by default\n" + r.all);
  assert.match(r.all, /once#1: attempt 1 failed, retrying \(attempt 2\): machine m: command `echo first attempt fails; exit 7` failed \(exit code 7\)/);
  assert.match(r.all, /^once#1: FLAKY \(2 attempts, [^)]+\): attempt 1 failed: machine m: command `echo first attempt fails; exit 7` failed/m);
  assert.match(r.all, /FLAKY once#1:/);
  assert.match(r.all, /0 passed, 1 flaky, 0 failed/);
  assert.match(r.all, /once: 1 run \(2 attempts\), 1 failed, 1 flaky run: 50\.0% \(95% CI 9\.5%–90\.5%\)/);
  const report = JSON.parse(readFileSync(join(dir, "r.json"), "utf8"));
  assert.deepEqual(report.summary, { runs: 1, passed: 0, flaky: 1, failed: 0, notRun: 0, loadErrors: 0 });
  const run = report.tests[0].runs[0];
  assert.equal(run.outcome, "flaky");
  assert.deepEqual(run.attempts.map((a: { outcome: string }) => a.outcome), ["failed", "passed"]);
  assert.equal(run.attempts[0].error.name, "MachineError");
  assert.equal(run.attempts[1].logDir, join(dir, "logs", "once#1", "try2"));
  assert.ok(run.attempts[0].log.some((l: string) => /must succeed: echo first attempt fails/.test(l)), "the failed attempt's output is in the report");
  for (const d of ["once#1", "once#1/try2"]) assert.ok(existsSync(join(dir, "logs", d, "run.jsonl")), `${d} has its own run log`);
  const retryLog = readFileSync(join(dir, "logs", "once#1", "try2", "run.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(retryLog[0].attempt, 2);
  assert.equal(retryLog.at(-1).outcome, "flaky");

  const strict = await haltpoint(["run", "test/fixtures/retry/once.vmtest.ts", "--retries", "1", "--flaky-fails", "-q", "--json", join(dir, "s.json")]);
  assert.equal(strict.exitCode, 1, strict.all);
  assert.match(strict.all, /1 flaky \(--flaky-fails\)/);
  assert.equal(JSON.parse(readFileSync(join(dir, "s.json"), "utf8")).exitStatus, 1);

  const none = await haltpoint(["run", "test/fixtures/retry/once.vmtest.ts", "-q"]);
  assert.equal(none.exitCode, 1, "without retries the first failure is the result\n" + none.all);
  assert.match(none.all, /!!! once#1: FAIL/);
});

test("`retries:` in the test file, overridden by --retries; a run failing every attempt is FAIL", async () => {
  const dir = tmp();
  const r = await haltpoint(["run", "test/fixtures/retry/declared.vmtest.ts", "test/fixtures/retry/always.vmtest.ts", "-q", "--json", join(dir, "r.json")]);
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.all, /declared#1: FLAKY \(3 attempts/);
  assert.match(r.all, /!!! always#1: FAIL \(\d+ ms|!!! always#1: FAIL/);
  const report = JSON.parse(readFileSync(join(dir, "r.json"), "utf8"));
  const t = (name: string) => report.tests.find((x: { name: string }) => x.name === name);
  assert.equal(t("declared").retries, 2);
  assert.equal(t("declared").runs[0].attempts.length, 3);
  assert.equal(t("always").runs[0].attempts.length, 1, "always declares no retries");

  const over = await haltpoint(["run", "test/fixtures/retry/declared.vmtest.ts", "test/fixtures/retry/always.vmtest.ts", "--retries", "2", "-q", "--json", join(dir, "o.json")]);
  assert.equal(over.exitCode, 1);
  const o = JSON.parse(readFileSync(join(dir, "o.json"), "utf8"));
  const always = o.tests.find((x: { name: string }) => x.name === "always").runs[0];
  assert.equal(always.outcome, "failed");
  assert.deepEqual(always.attempts.map((a: { outcome: string }) => a.outcome), ["failed", "failed", "failed"]);
  assert.match(always.error, /attempt 3 fails/);
  const zero = await haltpoint(["run", "test/fixtures/retry/declared.vmtest.ts", "--retries", "0", "-q"]);
  assert.equal(zero.exitCode, 1, "--retries 0 overrides the test's retries\n" + zero.all);
  const bad = await haltpoint(["run", "test/fixtures/retry", "--retries", "-1"]);
  assert.equal(bad.exitCode, 2);
  assert.match(bad.all, /--retries takes a whole number \(0 or more\), got '-1'/);
});

test("flake statistics: two failure causes make two groups, with their run numbers and one run's logs", async () => {
  const dir = tmp();
  const r = await haltpoint(["run", "test/fixtures/causes", "--repeat", "9", "--jobs", "3", "-q", "--log-dir", join(dir, "logs"), "--json", join(dir, "r.json")]);
  assert.equal(r.exitCode, 1, r.all);
  const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  assert.match(r.all, /two-causes: 9 runs, 6 failed: 66\.7% \(95% CI 35\.4%–87\.9%\)/);
  assert.match(r.all, new RegExp(re("3× no answer on port N from node <hex> after N s") + "\\n\\s+runs: 1, 4, 7\\n\\s+logs: " + re(join(dir, "logs", "two-causes#1"))));
  assert.match(r.all, new RegExp(re("3× machine m: command `ls <path>` failed (exit code N)") + "\\n\\s+runs: 3, 6, 9\\n\\s+logs: " + re(join(dir, "logs", "two-causes#3"))));
  const stats = JSON.parse(readFileSync(join(dir, "r.json"), "utf8")).tests[0].stats;
  assert.equal(stats.groups.length, 2);
  assert.deepEqual(stats.groups.map((g: { occurrences: { run: number }[] }) => g.occurrences.map((o) => o.run)).sort(), [[1, 4, 7], [3, 6, 9]]);
  assert.equal(stats.failures, 6);
  assert.equal(stats.attempts, 9);
});

test("--stress-duration repeats until the time is up; every run started is reported", async () => {
  const dir = tmp();
  const t0 = Date.now();
  const r = await haltpoint(["run", "test/fixtures/suite/pass.vmtest.ts", "--stress-duration", "1500ms", "--jobs", "2", "-q", "--json", join(dir, "r.json")]);
  const wall = Date.now() - t0;
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /1 test, runs for 1\.50 s, 2 jobs/);
  const report = JSON.parse(readFileSync(join(dir, "r.json"), "utf8"));
  const runs = report.tests[0].runs.map((x: { run: number }) => x.run);
  assert.ok(runs.length >= 5, `${runs.length} runs in 1.5 s`);
  assert.deepEqual(runs, runs.map((_: number, i: number) => i + 1), "runs are numbered on without gaps");
  assert.equal(report.summary.notRun, 0);
  assert.equal(report.stressMs, 1500);
  assert.ok(wall < 15_000, `stopped soon after the time was up (${wall} ms)`);
  const both = await haltpoint(["run", "test/fixtures/suite", "--stress-duration", "1s", "--repeat", "3"]);
  assert.equal(both.exitCode, 2);
  assert.match(both.all, /--stress-duration.*cannot be used with option '--repeat/);
});

test("GitHub Actions: failures become ::error annotations on the test file, flaky runs ::warning", async () => {
  const r = await haltpoint(["run", "test/fixtures/retry/once.vmtest.ts", "test/fixtures/retry/always.vmtest.ts", "--retries", "1", "-q"], { env: { GITHUB_ACTIONS: "true" } });
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.all, /^::error file=test\/fixtures\/retry\/always\.vmtest\.ts,line=7,title=always#1::failed 2 attempts: machine m: command `echo attempt 2 fails; exit 3` failed \(exit code 3\)%0A.*%0Alogs: \S+always#1\/try2$/m);
  assert.match(r.all, /^::warning file=test\/fixtures\/retry\/once\.vmtest\.ts,line=7,title=once#1::FLAKY \(passed on attempt 2\): machine m: command/m);
  const plain = await haltpoint(["run", "test/fixtures/retry/always.vmtest.ts", "-q"], { env: { GITHUB_ACTIONS: "" } });
  assert.doesNotMatch(plain.all, /::error/);

  assert.equal(escapeData("50% done\r\nnext"), "50%25 done%0D%0Anext");
  assert.equal(escapeProperty("a:b,c%"), "a%3Ab%2Cc%25");
  assert.equal(annotation("error", { file: "t/x,y.vmtest.ts", title: "x#1" }, "boom\nline 2"), "::error file=t/x%2Cy.vmtest.ts,title=x#1::boom%0Aline 2");
  assert.equal(lineInFile("Error: x\n    at f (file:///w/t/a.vmtest.ts:12:5)\n    at g (/w/t/b.ts:1:1)", "/w/t/a.vmtest.ts"), 12);
  assert.equal(lineInFile("Error: x\n    at f (/w/lib.ts:3:1)", "/w/t/a.vmtest.ts"), undefined);
});

test("colour: NO_COLOR wins, pipes and files get none, FORCE_COLOR and ANSI-rendering CI logs get it", async () => {
  assert.equal(colorEnabled({ isTTY: true }, { TERM: "xterm" }), true);
  assert.equal(colorEnabled({ isTTY: true }, { TERM: "xterm", NO_COLOR: "1" }), false);
  assert.equal(colorEnabled({ isTTY: true }, { TERM: "dumb" }), false);
  assert.equal(colorEnabled({ isTTY: false }, { CI: "true" }), false, "CI alone (logs to a file) gets no colour");
  assert.equal(colorEnabled({ isTTY: false }, { GITHUB_ACTIONS: "true" }), true);
  assert.equal(colorEnabled({ isTTY: false }, { GITHUB_ACTIONS: "true", NO_COLOR: "1" }), false);
  assert.equal(colorEnabled({ isTTY: false }, { FORCE_COLOR: "1" }), true);
  assert.equal(colorEnabled({ isTTY: false }, { FORCE_COLOR: "0" }), false);
  const env = { NO_COLOR: "", FORCE_COLOR: "", GITHUB_ACTIONS: "", GITLAB_CI: "", BUILDKITE: "" };
  const piped = await haltpoint(["run", "test/fixtures/suite", "-q"], { env });
  assert.doesNotMatch(piped.all, /\x1b\[/, "no escape codes into a pipe");
  const forced = await haltpoint(["run", "test/fixtures/suite", "-q"], { env: { ...env, FORCE_COLOR: "1" } });
  assert.match(forced.all, /\x1b\[31m!!! fail#1: FAIL/);
  const no = await haltpoint(["run", "test/fixtures/suite", "-q"], { env: { ...env, FORCE_COLOR: "1", NO_COLOR: "1" } });
  assert.doesNotMatch(no.all, /\x1b\[/);
});
