// bench/admission: the wall time of a mixed suite — one 3-guest, two 2-guest, four 1-guest
// and four local tests (bench/fixtures/admission: each machine burns CPU, idles, burns
// again) — at --cpu-overcommit 1, 1.5, 2 and 3 on --cores 2, through the whole
// orchestrator with haltpoint's own small guests (snapshot boots). The factors are measured
// interleaved (each round runs every factor, in a rotated order), so a change of the
// host's load (a shared machine) falls on every factor alike; the load is printed.
//   npm run bench:admission                    (HP_ADMISSION_ROUNDS=3 by default)
//   HP_BENCH_SMOKE=1 npm run bench:admission   (one round, two factors, 3 of the tests, little work)
// Knobs: HP_ADMISSION_ROUNDS, HP_ADMISSION_JOBS (default 8: admission by the budget alone),
// HP_ADMISSION_BURN (shell loop iterations per burn), HP_ADMISSION_IDLE (seconds idle),
// HP_ADMISSION_ROTATION (the first round's order).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { prepareQemu } from "../orchestrator/scheduling/prepare-qemu.ts";
import { applyV8Flags } from "../orchestrator/v8-flags.ts";
import { runCommand } from "../orchestrator/commands/run.ts";
import { demandOf } from "../orchestrator/scheduling/resource-budget.ts";
import { fmt, printTable } from "./table.ts";

applyV8Flags(); // as the CLI runs (orchestrator/v8-flags.ts)

const smoke = Boolean(process.env.HP_BENCH_SMOKE);
const ROUNDS = Number(process.env.HP_ADMISSION_ROUNDS ?? (smoke ? 1 : 3));
const JOBS = Number(process.env.HP_ADMISSION_JOBS ?? 8);
const CORES = 2;
/** Where the factors' rotation starts (to add a round in another order to an earlier run). */
const FIRST_ROTATION = Number(process.env.HP_ADMISSION_ROTATION ?? 0);
const FACTORS = smoke ? [1, 2] : [1, 1.5, 2, 3];
process.env.HP_ADMISSION_BURN ??= smoke ? "200" : "20000";
process.env.HP_ADMISSION_IDLE ??= smoke ? "0" : "3";
const suite = fileURLToPath(new URL("./fixtures/admission", import.meta.url));
// At smoke scale a part of the suite that still has admission to do (the 3-guest test beside
// a 1-guest and a local one): 4 guests per factor instead of 11.
const SMOKE_TESTS = ["three-guests", "one-guest-a", "local-a"];
const paths = smoke ? SMOKE_TESTS.map((t) => join(suite, `${t}.vmtest.ts`)) : [suite];
const scratch = mkdtempSync(join("/var/tmp", "hp-badm-"));

const loadavg = (): number => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
const qemu = await prepareQemu("auto", (l) => console.error(l));

interface Measured {
  ms: number;
  peakVcpus: number;
  peakRuns: number;
  load: number;
}

async function measure(factor: number, round: number): Promise<Measured> {
  let vcpus = 0;
  let runs = 0;
  let peakVcpus = 0;
  let peakRuns = 0;
  const load = loadavg();
  const t0 = performance.now();
  const status = await runCommand({
    paths,
    jobs: JOBS,
    backend: "qemu",
    repeat: 1,
    untilFail: false,
    quiet: true,
    abortGrace: 10,
    cores: CORES,
    cpuOvercommit: factor,
    qemuRuntime: qemu,
    logDir: join(scratch, `f${factor}-r${round}`),
    terminal: false,
    reporters: [
      {
        report: (e) => {
          if (e.kind === "run-start") {
            vcpus += demandOf(e.run.test).cores;
            runs++;
            peakVcpus = Math.max(peakVcpus, vcpus);
            peakRuns = Math.max(peakRuns, runs);
          } else if (e.kind === "run-end") {
            vcpus -= demandOf(e.result.run.test).cores;
            runs--;
          }
        },
      },
    ],
  });
  const ms = performance.now() - t0;
  if (status !== 0) throw new Error(`the suite failed at --cpu-overcommit ${factor} (exit status ${status}); logs in ${join(scratch, `f${factor}-r${round}`)}`);
  return { ms, peakVcpus, peakRuns, load };
}

const byFactor = new Map<number, Measured[]>(FACTORS.map((f) => [f, []]));
for (let r = 0; r < ROUNDS; r++) {
  const order = FACTORS.map((_, i) => FACTORS[(i + r + FIRST_ROTATION) % FACTORS.length]!);
  for (const f of order) {
    const m = await measure(f, r);
    byFactor.get(f)!.push(m);
    console.error(`round ${r + 1}/${ROUNDS}: --cpu-overcommit ${f}: ${fmt(m.ms / 1000, 1)} s (load ${m.load})`);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const base = median(byFactor.get(FACTORS[0]!)!.map((m) => m.ms));
printTable(
  `bench/admission: a mixed suite (${smoke ? "smoke: 1 × 3-guest, 1 × 1-guest, 1 local" : "1 × 3-guest, 2 × 2-guest, 4 × 1-guest, 4 local"}; burn ${process.env.HP_ADMISSION_BURN}, idle ${process.env.HP_ADMISSION_IDLE} s) on --cores ${CORES}, --jobs ${JOBS}, ${ROUNDS} interleaved round(s); accel ${qemu.accel}`,
  ["--cpu-overcommit", "vCPU budget", "wall s (median)", "each round s", "vs 1", "peak vCPUs", "peak runs", "load at start (mean)"],
  FACTORS.map((f) => {
    const ms = byFactor.get(f)!;
    const med = median(ms.map((m) => m.ms));
    return [
      f,
      CORES * f,
      fmt(med / 1000, 1),
      ms.map((m) => fmt(m.ms / 1000, 1)).join(", "),
      fmt(med / base, 2),
      Math.max(...ms.map((m) => m.peakVcpus)),
      Math.max(...ms.map((m) => m.peakRuns)),
      fmt(ms.reduce((a, m) => a + m.load, 0) / ms.length, 2),
    ];
  }),
);
rmSync(scratch, { recursive: true, force: true });
