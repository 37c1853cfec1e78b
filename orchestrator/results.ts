import type { SerializedError, WorkerEvent } from "../worker/events.ts";
import type { LoadError, PlannedRun, PlannedTest } from "./plan.ts";

export type RunOutcome = "passed" | "failed";

export interface RunResult {
  run: PlannedRun;
  outcome: RunOutcome;
  error?: SerializedError;
  /** Set when the orchestrator, not the script, ended the run (timeout, crash, Ctrl-C). */
  reason?: string;
  startedAt: number;
  durationMs: number;
  logDir: string;
}

export interface SuitePlan {
  tests: PlannedTest[];
  runs: PlannedRun[];
  loadErrors: LoadError[];
  jobs: number;
  logDir: string;
}

export interface SuiteSummary {
  plan: SuitePlan;
  results: RunResult[];
  /** Runs never started (Ctrl-C stopped admission). */
  notRun: PlannedRun[];
  interrupted: boolean;
  startedAt: number;
  durationMs: number;
}

/**
 * What reporters receive, in order: plan, then per run start/events/end, then end.
 * Reporters consume; they never reach back into the scheduler.
 */
export interface Reporter {
  onPlan?(plan: SuitePlan): void;
  onRunStart?(run: PlannedRun, logDir: string): void;
  onEvent?(run: PlannedRun, e: WorkerEvent): void;
  onRunEnd?(result: RunResult): void;
  /** A message from the orchestrator itself (interrupts, cleanup). */
  onNotice?(msg: string): void;
  onEnd?(summary: SuiteSummary): void | Promise<void>;
}

/** Fan one stream of events out to every reporter. */
export class ReporterSet implements Required<Reporter> {
  constructor(private readonly reporters: Reporter[]) {}
  onPlan(p: SuitePlan): void {
    for (const r of this.reporters) r.onPlan?.(p);
  }
  onRunStart(run: PlannedRun, logDir: string): void {
    for (const r of this.reporters) r.onRunStart?.(run, logDir);
  }
  onEvent(run: PlannedRun, e: WorkerEvent): void {
    for (const r of this.reporters) r.onEvent?.(run, e);
  }
  onRunEnd(result: RunResult): void {
    for (const r of this.reporters) r.onRunEnd?.(result);
  }
  onNotice(msg: string): void {
    for (const r of this.reporters) r.onNotice?.(msg);
  }
  async onEnd(s: SuiteSummary): Promise<void> {
    for (const r of this.reporters) await r.onEnd?.(s);
  }
}

/** The exit status DESIGN.md fixes: 0 passed, 1 a test failed, 2 a file could not load, 130 interrupted. */
export function exitStatus(s: SuiteSummary): number {
  if (s.interrupted) return 130;
  if (s.plan.loadErrors.length) return 2;
  return s.results.some((r) => r.outcome === "failed") ? 1 : 0;
}

export function runMessage(r: RunResult): string {
  if (r.outcome === "passed") return "";
  return r.reason ?? r.error?.message ?? "failed";
}
