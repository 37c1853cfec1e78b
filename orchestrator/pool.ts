import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";

export interface PoolOptions {
  /** Threads that run tests at once (--jobs). */
  threads: number;
  /** Threads beyond --jobs, started on demand: halted tests keep theirs. */
  extraThreads?: number;
  /** Heap limit of each worker thread in MiB (--worker-memory): a test that exceeds it
   *  fails with ERR_WORKER_OUT_OF_MEMORY instead of taking the orchestrator down. */
  workerMemoryMb?: number;
}

export const WORKER_ENTRY = fileURLToPath(new URL("../worker/entry.mjs", import.meta.url));

/** The worker-thread pool every test runs in. */
export function createPool(o: PoolOptions): Piscina {
  return new Piscina({
    filename: WORKER_ENTRY,
    minThreads: o.threads,
    maxThreads: o.threads + (o.extraThreads ?? 0),
    // Workers must keep their event loop turning between tasks ("sync" parks them, which
    // stalls unawaited async work and any console served by a halted test).
    atomics: "disabled",
    idleTimeout: 60_000,
    // One test per thread at a time: a test's timers and machines are its own.
    concurrentTasksPerWorker: 1,
    // A test's worker mostly waits on machines: a small young generation keeps each
    // thread's footprint down (the orchestrator's whole RSS is measured in bench/dispatch).
    resourceLimits: {
      maxYoungGenerationSizeMb: 8,
      ...(o.workerMemoryMb ? { maxOldGenerationSizeMb: o.workerMemoryMb } : {}),
    },
    // Worker stdio goes straight to ours (a test's console.log still shows).
  });
}
