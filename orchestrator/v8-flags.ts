import { setFlagsFromString } from "node:v8";

// The orchestrator is glue: its main thread relays worker events to reporters, its workers
// await machines. V8's optimizing tiers buy such code little speed and cost every isolate in
// the process (main thread, each worker, each worker's tsx loader thread) code space and
// feedback that grow with the number of runs. Measured with bench/dispatch's CLI rows, at
// --jobs 2 and 500 local runs: 158 MiB peak RSS with V8's defaults, 127 MiB with these
// flags, and the runs finish no slower (see docs/benchmarks.md).
//
// Set at run time, they apply to the isolates created afterwards (workers, loader threads)
// and to every compilation decision from then on, main thread included.

/** Trade V8's peak speed for memory (every isolate in the process). */
const MEMORY_FLAGS = ["--optimize-for-size", "--max-semi-space-size=1"];
/** Interpreter only: no Sparkplug, Maglev or TurboFan code. */
const NO_JIT_FLAGS = ["--no-sparkplug", "--no-maglev", "--no-opt"];

/** The flags `applyV8Flags` sets: HALTPOINT_V8_JIT=1 keeps V8's compilers for CPU-heavy test scripts. */
export function v8FlagsFor(env: NodeJS.ProcessEnv = process.env): string[] {
  return env.HALTPOINT_V8_JIT === "1" ? MEMORY_FLAGS : [...MEMORY_FLAGS, ...NO_JIT_FLAGS];
}

/** Call before the worker pool exists: the workers' isolates take the flags as they start. */
export function applyV8Flags(env: NodeJS.ProcessEnv = process.env): void {
  for (const flag of v8FlagsFor(env)) setFlagsFromString(flag);
}
