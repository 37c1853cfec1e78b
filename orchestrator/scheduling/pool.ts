import { Piscina } from "piscina";
import { HALTPOINT_INDEX, packageFile, RUNS_COMPILED } from "../../package-root.ts";
import { RECYCLE_EXIT_CODE } from "../../common/worker-exit.ts";

export interface PoolOptions {
  /** Threads that run tests at once (--jobs). */
  threads: number;
  /** Threads beyond --jobs, started on demand: halted tests keep theirs. */
  extraThreads?: number;
  /** Heap limit of each worker thread in MiB (--worker-memory): a test that exceeds it
   *  fails with ERR_WORKER_OUT_OF_MEMORY instead of taking the orchestrator down. */
  workerMemoryMb?: number;
}

/** Plain JavaScript, the same file for sources and dist/: it registers tsx (test files are
 *  TypeScript) and then imports `workerData.taskModule`. */
export const WORKER_ENTRY = packageFile("worker/entry.mjs");

/** Test files get the `haltpoint` the worker runs, compiled or sources (worker/resolve-haltpoint.mjs):
 *  one copy per thread, so `instanceof MachineError` holds. */
const WORKER_DATA = {
  taskModule: new URL(`../../worker/task.${RUNS_COMPILED ? "js" : "ts"}`, import.meta.url).href,
  haltpointIndex: HALTPOINT_INDEX,
};

/** The worker-thread pool every test runs in. */
export function createPool(o: PoolOptions): Piscina {
  return new Piscina({
    filename: WORKER_ENTRY,
    workerData: WORKER_DATA,
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

/** The exit code of the worker thread whose exit failed a task, if that is why it failed:
 *  piscina carries it only in its error's message (`worker exited with code: N`), so this
 *  is the one place that reads it (test/unit/pool.test.ts checks it against a real pool). */
export function workerExitCode(e: unknown): number | undefined {
  const m = e instanceof Error ? /^worker exited with code: (\d+)$/.exec(e.message) : null;
  return m ? Number(m[1]) : undefined;
}

/** A worker that recycled itself (worker/late-errors.ts) ended this task before it started. */
export const recycledWorker = (e: unknown): boolean => workerExitCode(e) === RECYCLE_EXIT_CODE;
