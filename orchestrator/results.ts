import type { SerializedError, WorkerEvent } from "../worker/events.ts";
import type { LoadError, PlannedRun, PlannedTest } from "./plan.ts";
import type { BreakpointInfo } from "../hooks/control-protocol.ts";

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
  /** A test halted at a breakpoint and can be attached to. */
  onBreakpoint?(run: PlannedRun, info: BreakpointInfo): void;
  /** A failing test was not halted (e.g. --max-frozen reached). */
  onBreakpointRefused?(run: PlannedRun, reason: string): void;
  onBreakpointEnd?(run: PlannedRun, info: BreakpointInfo, by: string): void;
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
  onBreakpoint(run: PlannedRun, info: BreakpointInfo): void {
    for (const r of this.reporters) r.onBreakpoint?.(run, info);
  }
  onBreakpointRefused(run: PlannedRun, reason: string): void {
    for (const r of this.reporters) r.onBreakpointRefused?.(run, reason);
  }
  onBreakpointEnd(run: PlannedRun, info: BreakpointInfo, by: string): void {
    for (const r of this.reporters) r.onBreakpointEnd?.(run, info, by);
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
