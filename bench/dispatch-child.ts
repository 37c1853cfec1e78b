// One measurement of bench/dispatch-refs.ts, in its own process: no-machine runs through the
// pool of the checkout at argv[2] (its own orchestrator/ sources), logs on tmpfs. Prints one
// JSON line: wall and main-thread CPU per run over the steady part (after the first tenth).
//   node --import tsx bench/dispatch-child.ts <checkout> <runs> <jobs> <logRoot>
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [root, runsArg, jobsArg, logRoot] = process.argv.slice(2) as [string, string, string, string];
const runs = Number(runsArg);
const jobs = Number(jobsArg);
const load = (f: string) => import(pathToFileURL(join(root, f)).href);
const { runCommand } = await load("orchestrator/commands/run.ts");
(await load("orchestrator/v8-flags.ts")).applyV8Flags();

/** CPU ms of this process's main thread (its tid is the pid): user + system, from /proc. */
function mainThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime: fields 14, 15 (USER_HZ 100)
}

const warm = Math.max(1, Math.floor(runs / 10));
let ended = 0;
let passed = 0;
let mark: { t: number; cpu: number; proc: number } | undefined;
const procCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
function runEnded(r: { outcome: string }): void {
  if (r.outcome === "passed") passed++;
  if (++ended === warm) mark = { t: performance.now(), cpu: mainThreadCpuMs(), proc: procCpuMs() };
}

const t0 = performance.now();
const status = await runCommand({
  paths: [join(root, "bench/fixtures/no-machine.vmtest.ts")],
  jobs,
  backend: "local",
  repeat: runs,
  untilFail: false,
  quiet: true,
  abortGrace: 10,
  logDir: logRoot,
  terminal: false,
  reporters: [
    // A checkout before the report event stream (4112dce and older) calls onRunEnd, a later one report.
    {
      report: (e: { kind: string; result?: { outcome: string } }) => {
        if (e.kind === "run-end") runEnded(e.result!);
      },
      onRunEnd: runEnded,
    },
  ],
});
const t1 = performance.now();
const steadyRuns = runs - warm;
console.log(
  JSON.stringify({
    status,
    passed,
    totalMs: t1 - t0,
    steadyWallMs: (t1 - mark!.t) / steadyRuns,
    steadyMainCpuMs: (mainThreadCpuMs() - mark!.cpu) / steadyRuns,
    steadyProcCpuMs: (procCpuMs() - mark!.proc) / steadyRuns,
  }),
);
