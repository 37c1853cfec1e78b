// Where the pool's time per no-machine run goes: N runs at --jobs 2 with logs on tmpfs, for
// `node --cpu-prof` (one profile per thread).   node --cpu-prof --cpu-prof-dir=DIR --import tsx bench/profile-dispatch.ts
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { runCommand } from "../orchestrator/commands/run.ts";
import { applyV8Flags } from "../orchestrator/v8-flags.ts";
import { scratchDir } from "./scratch.ts";

applyV8Flags();
const runs = Number(process.env.HP_BENCH_RUNS ?? 2000);
const jobs = Number(process.env.HP_BENCH_JOBS ?? 2);
const logs = scratchDir("hp-bprof-", "/dev/shm");
const cpu0 = process.cpuUsage();
const elu0 = performance.eventLoopUtilization();
const t0 = performance.now();
const status = await runCommand({
  paths: [fileURLToPath(new URL("./fixtures/no-machine.vmtest.ts", import.meta.url))],
  jobs, backend: "local", repeat: runs, untilFail: false, quiet: true, abortGrace: 10, logDir: join(logs, "logs"), terminal: false, reporters: [],
});
const s = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const elu = performance.eventLoopUtilization(elu0);
// CPU time of the whole process (all threads) per run, and how busy the main thread was: on a
// loaded host the wall time says little, these two say where a run's cost is.
console.log(`${runs} runs at --jobs ${jobs}: ${s.toFixed(2)} s, ${(runs / s).toFixed(0)} runs/s, process CPU ${((cpu.user + cpu.system) / 1000 / runs).toFixed(3)} ms/run, main thread busy ${(elu.utilization * 100).toFixed(0)}%, status ${status}`);
