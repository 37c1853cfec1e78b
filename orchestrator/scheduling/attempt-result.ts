import type { WorkerEvent } from "../../common/events.ts";
import type { AbortCause, Failure, FailureCause } from "../../common/failure-kinds.ts";
import type { HaltSpan, RunAttempt } from "../results.ts";

type DoneEvent = Extract<WorkerEvent, { t: "done" }>;

/** Everything the scheduler saw of one attempt, once its worker task has returned. */
export interface AttemptFacts {
  attempt: number;
  startedAt: number;
  /** Since the task was handed to the pool: the duration when the worker sent no `done`. */
  elapsedMs: number;
  logDir: string;
  slot: number;
  /** The run's last message, if it came. */
  done?: DoneEvent;
  /** The orchestrator asked the run to stop (global timeout, Ctrl-C). */
  abort?: AbortCause;
  /** The task failed: its worker died, or was killed after the abort grace. */
  crash?: Extract<FailureCause, { kind: "worker-crashed" | "worker-killed" }>;
  /** Machines whose processes outlived the run and were killed. */
  leftovers: string[];
  halts: HaltSpan[];
}

/**
 * The attempt those facts make: passed only if the script passed and nothing else went
 * wrong; a failed one gets its `failure`, first cause first — the orchestrator's abort,
 * a crash, a missing result, then the script's own failure — and leftover processes last.
 */
export function attemptFrom(f: AttemptFacts): RunAttempt {
  const { done } = f;
  const passed = done?.outcome === "passed" && !f.crash && !f.abort;
  const attempt: RunAttempt = {
    attempt: f.attempt,
    outcome: passed ? "passed" : "failed",
    startedAt: f.startedAt,
    durationMs: done?.durationMs ?? f.elapsedMs,
    logDir: f.logDir,
    slot: f.slot,
  };
  if (f.halts.length) attempt.halts = f.halts;
  if (done?.error) attempt.error = done.error;
  if (passed) return attempt;
  const causes: FailureCause[] = [];
  if (f.abort) causes.push(f.abort);
  if (f.crash) causes.push(f.crash);
  if (!done && !f.crash) causes.push({ kind: "no-result" });
  // A run that lost its race to the abort has no failure of its own: the abort is its cause.
  if (done?.outcome === "failed" && !(done.aborted && f.abort)) causes.push({ kind: done.failureKind ?? "assertion" });
  if (f.leftovers.length) causes.push({ kind: "leftovers", machines: [...new Set(f.leftovers)] });
  const [first, ...also] = causes;
  if (!first) return attempt; // the script passed but nothing says why it did not: cannot happen
  const failure: Failure = { ...first };
  if (also.length) failure.also = also;
  // What the script saw after the orchestrator stopped it (the report says it when it
  // differs from the abort's own words).
  if (f.abort && attempt.error) failure.scriptSaw = attempt.error.message;
  attempt.failure = failure;
  return attempt;
}
