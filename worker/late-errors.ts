import { AsyncLocalStorage } from "node:async_hooks";
import { BroadcastChannel, isMainThread, threadId } from "node:worker_threads";
import { describeThrown } from "../common/describe-thrown.ts";
import { lateErrorChannelName, type LateErrorNotice, RECYCLE_EXIT_CODE } from "../common/worker-exit.ts";

/**
 * Errors nobody awaited: a timer that throws, or a promise that rejects, after the code
 * that started it moved on. Each run executes inside an AsyncLocalStorage context, so the
 * error carries the run that started it (timers and promises inherit it):
 * - from the run that is still running here: that run fails with it;
 * - from a run that already finished: a notice naming it goes to the orchestrator (the
 *   result it reported stands), and this worker is recycled (its state is in doubt) once
 *   it is idle, so the next test never runs beside the leftover.
 * Without handlers an uncaught error in a worker kills the thread, and piscina emits
 * 'error' on the pool, which ended the whole run.
 */


interface RunningTest {
  runKey: string;
  fail: (e: unknown) => void;
}

const owner = new AsyncLocalStorage<string>();
let running: RunningTest | undefined;
let lastFinished: string | undefined;
let recycle = false;
let channel: BroadcastChannel | undefined;
let installed = false;

function recycleNow(): void {
  setImmediate(() => process.exit(RECYCLE_EXIT_CODE));
}

function onLateError(kind: LateErrorNotice["kind"], e: unknown): void {
  const runKey = owner.getStore() ?? running?.runKey ?? lastFinished ?? "(no test)";
  if (running && runKey === running.runKey) {
    running.fail(e);
    return;
  }
  channel ??= new BroadcastChannel(lateErrorChannelName());
  const notice: LateErrorNotice = { runKey, kind, message: describeThrown(e instanceof Error ? e.message : e), threadId };
  channel.postMessage(notice);
  recycle = true;
  if (!running) recycleNow();
}

function install(): void {
  if (installed || isMainThread) return;
  installed = true;
  process.on("uncaughtException", (e) => onLateError("uncaughtException", e));
  process.on("unhandledRejection", (e) => onLateError("unhandledRejection", e));
}

/**
 * Run one test's task as `runKey`. `failed` rejects with the first error of this run's own
 * that nobody caught while it runs: the test races its script against it.
 */
export async function runOwnedBy<T>(runKey: string, fn: (failed: Promise<never>) => Promise<T>): Promise<T> {
  install();
  // Recycling (recycleNow) waits for a turn of the event loop, in which piscina may already
  // have handed this worker its next test: it takes none, and exits before that test starts
  // (the scheduler then runs it again elsewhere, as a run that never started).
  if (recycle) process.exit(RECYCLE_EXIT_CODE);
  let fail!: (e: unknown) => void;
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => {}); // a race's loser when no late error comes; the race sees it when one does
  running = { runKey, fail };
  try {
    return await owner.run(runKey, () => fn(failed));
  } finally {
    running = undefined;
    lastFinished = runKey;
    if (recycle) recycleNow(); // after piscina has posted this task's result
  }
}
