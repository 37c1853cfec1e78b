import type { WorkerEvent } from "../common/events.ts";
import type { Notice } from "../common/failure-kinds.ts";
import type { BreakpointEvent } from "../hooks/breakpoints/breakpoint-events.ts";
import type { PlannedRun } from "./selection/plan.ts";
import type { RunAttempt, RunResult, SuitePlan, SuiteSummary } from "./results.ts";

/**
 * What reporters receive, in order: `plan`, then per run `run-start`, its `worker-event`s
 * (with a `retry` between attempts), `run-end`; notices, slow runs and breakpoints as they
 * happen; `end` last. The scheduler, the broker and the run command emit them as data;
 * only reporters put them into words. Reporters consume; they never reach back.
 */
export type ReportEvent =
  | { kind: "plan"; plan: SuitePlan }
  | { kind: "run-start"; run: PlannedRun; logDir: string }
  /** One event from the run's worker (a log line, a subtest, a halt, `done`, …). */
  | { kind: "worker-event"; run: PlannedRun; event: WorkerEvent }
  /** An attempt failed and the run is retried (--retries): attempt `next` logs to `logDir`. */
  | { kind: "retry"; run: PlannedRun; failed: RunAttempt; next: number; logDir: string }
  | { kind: "run-end"; result: RunResult }
  /** An attempt is still running `elapsedMs` after it started (--slow-timeout), repeated each `slowTimeoutMs`. */
  | { kind: "slow"; run: PlannedRun; attempt: number; elapsedMs: number; slowTimeoutMs: number }
  /** A message from the orchestrator itself (interrupts, cleanup). */
  | { kind: "notice"; notice: Notice }
  | BreakpointEvent<PlannedRun>
  /** The suite is over: reports are written now. */
  | { kind: "end"; summary: SuiteSummary };

/** Every event but `end`: what is emitted while the suite runs (synchronously). */
export type LiveReportEvent = Exclude<ReportEvent, { kind: "end" }>;

/**
 * A consumer of the event stream. `report` returns nothing, except for `end`, whose
 * promise (a report file being written) is awaited.
 */
export interface Reporter {
  report(e: ReportEvent): void | Promise<void>;
}

/** The one fan-out: each event to every reporter, in the order they were added. */
export class ReporterSet {
  /** One line per report that could not be written (a full or read-only disk): exit 3. */
  readonly writeFailures: string[] = [];

  constructor(private readonly reporters: Reporter[]) {}

  /** One more reporter, from here on (queue mode's host, once it has joined). */
  add(r: Reporter): void {
    this.reporters.push(r);
  }

  emit(e: LiveReportEvent): void {
    for (const r of this.reporters) void r.report(e);
  }

  /** A notice: the most common event, spelled short. */
  notice(notice: Notice): void {
    this.emit({ kind: "notice", notice });
  }

  /** Each reporter on its own: an unwritable --junit must not lose the --json report. */
  async end(summary: SuiteSummary): Promise<void> {
    for (const r of this.reporters) {
      try {
        await r.report({ kind: "end", summary });
      } catch (e) {
        this.writeFailures.push(e instanceof Error ? e.message : String(e));
      }
    }
  }
}
