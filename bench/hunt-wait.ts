// A flake hunt of a test that works a while, in turns with and without machines taken ahead
// (worker/machines-ahead.ts): each run's wait for its machines, from the worker's `start`
// event to the test's FIRST-COMMAND line (its first command answered; the fixture logs it),
// against the bare QEMU start measured in the same bench run. bench/vm and bench/debian use it.
import { join } from "node:path";
import { runCommand } from "../orchestrator/commands/run.ts";
import type { QemuRuntime } from "../vm/qemu/qemu-runtime.ts";
import { fmt, percentile, printTable } from "./table.ts";
import { knob } from "./smoke.ts";

export interface HuntWaitOptions {
  /** The test file: one qemu guest, logs FIRST-COMMAND after its first command, then works HP_BENCH_WORK_S seconds. */
  fixture: string;
  qemu: QemuRuntime;
  /** Runs per round at full scale (HP_BENCH_WORK_RUNS overrides; 3 at smoke scale). */
  fullRuns: number;
  scratch: string;
  /** This bench run's bare QEMU starts (ms): the waits are read against their median. */
  bareStarts: number[];
  title: string;
}

const MODES = ["each run starts its own", "taken ahead"] as const;

/** Prints the table; returns the median wait with machines taken ahead over the bare QEMU start. */
export async function measureHuntWaits(opts: HuntWaitOptions): Promise<number> {
  const o = {
    ...opts,
    runs: knob("HP_BENCH_WORK_RUNS", opts.fullRuns, 3),
    rounds: knob("HP_BENCH_WORK_ROUNDS", 2, 1),
    workSeconds: knob("HP_BENCH_WORK_S", 2, 0.5),
    bareMs: percentile([...opts.bareStarts].sort((a, b) => a - b), 0.5),
  };
  process.env.HP_BENCH_WORK_S = String(o.workSeconds); // the pool's threads copy the environment when they start
  const waits: Record<string, number[]> = Object.fromEntries(MODES.map((m) => [m, []]));
  const wall: Record<string, number> = {};
  for (let round = 0; round < o.rounds; round++) {
    for (const [i, mode] of MODES.entries()) {
      const started = new Map<string, number>();
      let passed = 0;
      const t = performance.now();
      const status = await runCommand({
        paths: [o.fixture], jobs: 2, backend: "qemu", repeat: o.runs, untilFail: false, quiet: true, abortGrace: 10,
        logDir: join(o.scratch, `hunt-wait-${round}-${i}`), terminal: false, qemuRuntime: o.qemu, takeAhead: mode === "taken ahead",
        reporters: [{
          report: (e) => {
            if (e.kind === "run-end" && e.result.outcome === "passed") passed++;
            if (e.kind !== "worker-event") return;
            if (e.event.t === "start") started.set(e.run.key, e.event.time);
            else if (e.event.t === "log" && e.event.msg === "FIRST-COMMAND") waits[mode]!.push(e.event.time - started.get(e.run.key)!);
          },
        }],
      });
      wall[mode] = (wall[mode] ?? 0) + performance.now() - t;
      if (status !== 0 || passed !== o.runs) throw new Error(`${o.title}, ${mode}: status ${status}, ${passed}/${o.runs} passed`);
    }
  }
  const rows = MODES.map((mode) => {
    const w = waits[mode]!.sort((a, b) => a - b);
    return [mode, w.length, fmt(percentile(w, 0.5), 0), fmt(percentile(w, 0.95), 0), `${fmt(percentile(w, 0.5) / o.bareMs, 1)}x`, fmt(((o.runs * o.rounds) / wall[mode]!) * 60000, 1)];
  });
  printTable(
    `${o.title}: a hunt of a test that works ${o.workSeconds} s, ${o.runs} runs at --jobs 2 × ${o.rounds} rounds, the modes in turns: each run's wait for its guest (the run's start → its first command answered)`,
    ["guests", "runs", "median wait ms", "p95 wait ms", `median / bare QEMU start (${fmt(o.bareMs, 0)} ms)`, "runs/min"],
    rows,
  );
  return percentile(waits["taken ahead"]!, 0.5) / o.bareMs;
}
