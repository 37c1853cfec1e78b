// Teardown is best effort but never silent: a step that fails is one log line naming it,
// and the steps after it still run. Every thread tears down (machines in a worker, the pool
// and the control socket in the main thread), so this leaf imports nothing; vm/ may use it.

/** Where a teardown step's failure is said: a run log, a machine's log, stderr. */
export type TeardownLog = (msg: string) => void;

/** The line a failed teardown step leaves. */
export function teardownFailure(what: string, e: unknown): string {
  return `teardown: ${what} failed: ${e instanceof Error ? e.message : String(e)}`;
}

/** Run one teardown step (a promise, or a function that may throw or return one); a failure is logged, never thrown. */
export async function bestEffort(log: TeardownLog, what: string, step: Promise<unknown> | (() => unknown)): Promise<void> {
  try {
    await (typeof step === "function" ? step() : step);
  } catch (e) {
    log(teardownFailure(what, e));
  }
}

/** The main thread's teardown log when nothing else is left to say it: stderr, as haltpoint. */
export const stderrTeardownLog: TeardownLog = (msg) => void process.stderr.write(`haltpoint: ${msg}\n`);
