// bench/dispatch: what the orchestrator costs per run, against the same test scripts
// awaited in a plain loop in this process (no pool, no scheduler, no reports).
//   npm run bench:dispatch            (HP_BENCH_SCALE=0.1 for a quick look; HP_BENCH_SMOKE=1: 0.02)
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { distIsFresh } from "../bin/dist-is-fresh.mjs";
import { runCommand } from "../orchestrator/commands/run.ts";
import { applyV8Flags } from "../orchestrator/v8-flags.ts";
import { LocalMachine } from "../vm/local/local-machine.ts";
import { baseline as loopBaseline, machineContext } from "./baseline.ts";
import { knob, SMOKE } from "./smoke.ts";
import { scratchDir } from "./scratch.ts";
import { fmt, percentile, printTable } from "./table.ts";

// The pool below runs in this process: give it the V8 flags the CLI runs with (the plain
// loop it is compared with runs under them too).
applyV8Flags();

const scale = knob("HP_BENCH_SCALE", 1, 0.02);
const fixture = (f: string) => fileURLToPath(new URL(`./fixtures/${f}`, import.meta.url));
const scratch = scratchDir("hp-bench-");

/** The baseline: load the test once, then await its script `runs` times in a loop. */
const baseline = (file: string, runs: number): Promise<number> => loopBaseline(file, runs, scratch);

async function pooled(file: string, runs: number, jobs: number, logRoot: string): Promise<{ ms: number; startupMs: number; passed: number }> {
  let passed = 0;
  let firstStart = 0;
  const t0 = performance.now();
  const status = await runCommand({
    paths: [file],
    jobs,
    backend: "local",
    repeat: runs,
    untilFail: false,
    quiet: true,
    abortGrace: 10,
    logDir: join(logRoot, `logs-${jobs}-${Date.now()}`),
    terminal: false,
    reporters: [{ report: (e) => void (e.kind === "run-start" ? (firstStart ||= performance.now()) : e.kind === "run-end" && e.result.outcome === "passed" && passed++) }],
  });
  const ms = performance.now() - t0;
  if (status !== 0) throw new Error(`bench run failed with status ${status}`);
  return { ms, startupMs: firstStart - t0, passed };
}

/** Peak resident memory of the real CLI (main thread + worker threads: one process), and its wall time. */
async function cliPeakRss(file: string, runs: number, jobs: number, env: Record<string, string>): Promise<{ rss: number; s: number }> {
  const { execa } = await import("execa");
  const bin = fileURLToPath(new URL("../bin/haltpoint.mjs", import.meta.url));
  const t0 = performance.now();
  const child = execa("node", [bin, "run", file, "--repeat", String(runs), "--jobs", String(jobs), "-q", "--log-dir", join(scratch, `rss-${jobs}`)], { reject: false, env: { CI: "true", ...env } });
  let peak = 0;
  const timer = setInterval(() => {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      if (m) peak = Math.max(peak, Number(m[1]) * 1024);
    } catch {}
  }, 10);
  const r = await child;
  clearInterval(timer);
  if (r.exitCode !== 0) throw new Error(`CLI run failed: ${r.stderr}`);
  return { rss: peak, s: (performance.now() - t0) / 1000 };
}

async function succeedLatency(n: number): Promise<number[]> {
  const m = new LocalMachine("m", {}, machineContext(join(scratch, "latency")));
  await m.start();
  for (let i = 0; i < 20; i++) await m.succeed("true"); // warm up
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await m.succeed("true");
    times.push(performance.now() - t);
  }
  await m.cleanup();
  return times.sort((a, b) => a - b);
}

const rows: (string | number)[][] = [];
const tmpfs = existsSync("/dev/shm") ? scratchDir("hp-bench-", "/dev/shm") : undefined;
const noMachineRuns = Math.round(2000 * scale);
for (const [name, file, runs] of [
  ["no machine", fixture("no-machine.vmtest.ts"), noMachineRuns],
  ["1 local machine, succeed(\"true\")", fixture("one-local.vmtest.ts"), Math.round(500 * scale)],
] as const) {
  const base = await baseline(file, runs);
  const basePer = base / runs;
  rows.push([name, "baseline: plain loop", "—", runs, fmt((runs / base) * 1000, 0), fmt(basePer, 3), "—", "—"]);
  for (const [where, root] of [["disk", scratch], ["tmpfs", tmpfs]] as const) {
    if (!root) continue;
    // At smoke scale each code path once, one pool start per test: no machine at --jobs 1
    // with logs on disk, the local machine at --jobs 2 on tmpfs.
    if (SMOKE && (where === "disk") !== (runs === noMachineRuns)) continue;
    for (const jobs of SMOKE ? [where === "disk" ? 1 : 2] : [1, 2]) {
      const r = await pooled(file, runs, jobs, root);
      if (r.passed !== runs) throw new Error(`${r.passed}/${runs} runs reported passed`);
      const steady = (r.ms - r.startupMs) / runs;
      // At --jobs 2 two runs overlap, so each run's own cost is the steady wall time per
      // run × jobs; the overhead is that minus the plain loop's time per run.
      rows.push([name, `pool --jobs ${jobs}`, where, runs, fmt((runs / r.ms) * 1000, 0), fmt(steady, 3), fmt(steady * jobs - basePer, 3), fmt(r.startupMs, 0)]);
    }
  }
}
if (tmpfs) rmSync(tmpfs, { recursive: true, force: true });
printTable(
  "bench/dispatch: runs through the worker pool vs the same scripts in a plain loop (same process)",
  ["test", "mode", "run logs on", "runs", "runs/s (incl. startup)", "steady ms/run (wall)", "overhead ms/run", "startup ms"],
  rows,
);

// The CLI rows measure the compiled CLI as shipped: build dist/ first where it is stale.
if (!distIsFresh(new URL("../", import.meta.url))) {
  const { execa } = await import("execa");
  console.error("bench/dispatch: dist/ is older than the sources: npm run build");
  await execa("npm", ["run", "build"], { cwd: fileURLToPath(new URL("../", import.meta.url)), stdio: "inherit" });
}
const cliRows: (string | number)[][] = [];
const localRuns = Math.round(500 * scale);
let shipped = 0;
const cliConfigs = [
  ["as shipped: dist/, V8 interpreter only", localRuns, {}],
  ["as shipped, 4x the runs", localRuns * 4, {}],
  ["dist/, V8's compilers on (HALTPOINT_V8_JIT=1)", localRuns, { HALTPOINT_V8_JIT: "1" }],
  ["sources through tsx (HALTPOINT_FROM_SOURCE=1)", localRuns, { HALTPOINT_FROM_SOURCE: "1" }],
  ["sources through tsx, V8's compilers on", localRuns, { HALTPOINT_FROM_SOURCE: "1", HALTPOINT_V8_JIT: "1" }],
] as const;
// At smoke scale the CLI as shipped only (test/package.test.ts and others run it from sources).
for (const [config, runs, env] of SMOKE ? [cliConfigs[0]] : cliConfigs) {
  const r = await cliPeakRss(fixture("one-local.vmtest.ts"), runs, 2, env);
  shipped ||= r.rss;
  cliRows.push([config, runs, 2, fmt(r.rss / 2 ** 20, 0), `${fmt(r.rss / shipped, 2)}x`, fmt(r.s, 2), fmt(runs / r.s, 0)]);
}
printTable(
  "the real CLI: peak resident memory of the whole process (main thread + workers + loader threads), 1 local machine per run",
  ["configuration", "runs", "--jobs", "peak RSS MiB", "RSS vs shipped", "wall s", "runs/s"],
  cliRows,
);

const lat = await succeedLatency(Math.round(500 * Math.max(scale, 0.2)));
printTable("succeed(\"true\") on a local machine", ["commands", "median ms", "p95 ms"], [[lat.length, fmt(percentile(lat, 0.5), 3), fmt(percentile(lat, 0.95), 3)]]);
rmSync(scratch, { recursive: true, force: true });
