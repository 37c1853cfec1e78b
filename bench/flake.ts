// bench/flake: the cost of flake hunting — 1,000 runs of a local one-machine test at
// --jobs 2 through the whole orchestrator (pool, scheduler, run logs, reports, flake
// statistics), next to the same script awaited in a plain loop in this process (the
// foundation's dispatch baseline). Every run started must be reported.
//   npm run bench:flake            (HP_BENCH_SCALE=0.1 for a quick look; HP_BENCH_SMOKE=1: 0.01)
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { applyV8Flags } from "../orchestrator/v8-flags.ts";
import { runCommand } from "../orchestrator/commands/run.ts";
import type { RunOptions } from "../orchestrator/commands/run-options.ts";
import type { SuiteSummary } from "../orchestrator/results.ts";
import { baseline } from "./baseline.ts";
import { knob } from "./smoke.ts";
import { scratchDir } from "./scratch.ts";
import { fmt, printTable } from "./table.ts";

applyV8Flags(); // as the CLI runs (orchestrator/v8-flags.ts)

const scale = knob("HP_BENCH_SCALE", 1, 0.01);
const RUNS = Math.max(10, Math.round(1000 * scale));
const JOBS = 2;
const STRESS_S = Math.max(1, 10 * scale);
const fixture = (f: string) => fileURLToPath(new URL(`./fixtures/${f}`, import.meta.url));
const scratch = scratchDir("hp-bflake-");

interface Measured {
  ms: number;
  started: number;
  reported: number;
  summary: SuiteSummary | undefined;
  status: number;
  /** From the last run's end to runCommand's return: summary, reports, pool teardown. */
  afterMs: number;
}

/** One `haltpoint run` in this process; counts what the reporters saw. */
async function measure(name: string, o: Partial<RunOptions> & { paths: string[] }): Promise<Measured> {
  let started = 0;
  let reported = 0;
  let summary: SuiteSummary | undefined;
  let lastEnd = 0;
  const t0 = performance.now();
  const status = await runCommand({
    jobs: JOBS,
    backend: "local",
    repeat: 1,
    untilFail: false,
    quiet: true,
    abortGrace: 10,
    logDir: join(scratch, name),
    terminal: false,
    ...o,
    reporters: [
      {
        report: (e) => {
          if (e.kind === "run-start") started++;
          else if (e.kind === "run-end") {
            reported++;
            lastEnd = performance.now();
          } else if (e.kind === "end") summary = e.summary;
        },
      },
    ],
  });
  const ms = performance.now() - t0;
  return { ms, started, reported, summary, status, afterMs: performance.now() - lastEnd };
}

const rows: (string | number)[][] = [];
const row = (mode: string, runs: number, jobs: number | string, ms: number, reported: string, afterMs?: number) =>
  rows.push([mode, runs, jobs, fmt(ms / 1000, 2), fmt((runs / ms) * 1000, 0), reported, afterMs === undefined ? "—" : fmt(afterMs, 0)]);

// 1. The foundation's dispatch baseline: the script in a plain loop, no orchestrator.
const base = await baseline(fixture("one-local.vmtest.ts"), RUNS, scratch);
row("baseline: plain loop, same script", RUNS, "—", base, "—");

// 2. --repeat 1000 --jobs 2.
const rep = await measure("repeat", { paths: [fixture("one-local.vmtest.ts")], repeat: RUNS });
if (rep.status !== 0) throw new Error(`--repeat run failed with status ${rep.status}`);
row(`--repeat ${RUNS}`, rep.reported, JOBS, rep.ms, `${rep.reported}/${rep.started}`, rep.afterMs);

// 3. Flake hunting proper: 1 run in 20 flaky, --retries 1, JSON + JUnit reports, statistics.
const json = join(scratch, "flaky.json");
const flaky = await measure("flaky", {
  paths: [fixture("flake/one-in-twenty.vmtest.ts")],
  repeat: RUNS,
  retries: 1,
  json,
  junit: join(scratch, "flaky.xml"),
});
const report = JSON.parse(readFileSync(json, "utf8"));
const flakyRuns = report.summary.flaky as number;
if (flaky.status !== 0 || flakyRuns !== Math.floor(RUNS / 20)) throw new Error(`expected ${Math.floor(RUNS / 20)} flaky runs, got ${flakyRuns} (status ${flaky.status})`);
if (report.summary.runs !== flaky.started) throw new Error(`the JSON report has ${report.summary.runs} runs, ${flaky.started} started`);
row(`--repeat ${RUNS} --retries 1, 1 in 20 flaky, --json --junit`, flaky.reported, JOBS, flaky.ms, `${flaky.reported}/${flaky.started}`, flaky.afterMs);

// 4. --stress-duration: as many runs as fit.
const stress = await measure("stress", { paths: [fixture("one-local.vmtest.ts")], stressDuration: STRESS_S });
if (stress.status !== 0) throw new Error(`--stress-duration run failed with status ${stress.status}`);
row(`--stress-duration ${STRESS_S}s`, stress.reported, JOBS, stress.ms, `${stress.reported}/${stress.started}`, stress.afterMs);

printTable(
  "bench/flake: runs of a 1-local-machine test (succeed(\"true\")) through the orchestrator vs a plain loop (same process; wall time includes pool startup and reports)",
  ["mode", "runs", "--jobs", "wall s", "runs/s", "reported/started", "after last run ms"],
  rows,
);
const st = report.tests[0].stats;
printTable("the flaky run's statistics, as the JSON report has them", ["test", "runs", "attempts", "failed attempts", "rate", "95% Wilson", "groups"], [
  [report.tests[0].name, st.runs, st.attempts, st.failures, `${fmt(st.failureRate * 100, 2)}%`, `${fmt(st.wilson95.low * 100, 2)}%–${fmt(st.wilson95.high * 100, 2)}%`, st.groups.length],
]);
for (const m of [rep, flaky, stress]) if (m.reported !== m.started) throw new Error(`lost results: ${m.reported} reported of ${m.started} started`);
rmSync(scratch, { recursive: true, force: true });
