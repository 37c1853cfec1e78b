import type { SerializedError } from "../common/events.ts";
import type { LoadError, PlannedRun, PlannedTest } from "./selection/plan.ts";
import type { Shard } from "./selection/shard.ts";
import type { HostFacts } from "../vm/host-facts.ts";
import type { Failure, StopReason } from "../common/failure-kinds.ts";
import { failureReason } from "./reporters/failure-text.ts";

/** A run's outcome: "flaky" when it failed, then passed on a retry (--retries). */
export type RunOutcome = "passed" | "failed" | "flaky";

/** One execution of a run: the first, or a retry (attempt 2, 3, …). */
export interface RunAttempt {
  /** 1-based. */
  attempt: number;
  outcome: "passed" | "failed";
  error?: SerializedError;
  /** What ended a failed attempt, as data (reporters put it into words). */
  failure?: Failure;
  /** Only from reports of older haltpoints (merged): their words for `failure`. Read it through reasonOf(). */
  reason?: string;
  startedAt: number;
  durationMs: number;
  /** `<log dir>/<test>#<run>` for attempt 1, `…/try<N>` for attempt N. */
  logDir: string;
  /** Which --jobs slot (0-based) ran it: the HTML report's timeline lanes. */
  slot?: number;
  /** Where it halted at a breakpoint (the slot was given back meanwhile). */
  halts?: HaltSpan[];
  /** Queue mode: the host that ran it (its logs and bundles are there). */
  host?: string;
  /** Queue mode: hosts that took this run before and died holding it (their lease expired). */
  lostHosts?: string[];
}

/** A stretch of an attempt spent halted at a breakpoint. */
export interface HaltSpan {
  /** The broker's breakpoint id (its console port). */
  id: string;
  kind: "failure" | "breakpoint";
  startedAt: number;
  durationMs: number;
  /** Who released it (`haltpoint release`, --freeze-ttl, the end of the run). */
  by?: string;
}

export interface RunResult {
  run: PlannedRun;
  outcome: RunOutcome;
  /** Of the last failed attempt (failed, flaky); none when passed. */
  error?: SerializedError;
  /** Of the last failed attempt (failed, flaky). */
  failure?: Failure;
  /** Only from reports of older haltpoints (merged); read it through reasonOf(). */
  reason?: string;
  /** When the first attempt started. */
  startedAt: number;
  /** All attempts together. */
  durationMs: number;
  /** The last failed attempt's logs (failed, flaky), else the passing attempt's. */
  logDir: string;
  /** Every attempt, in order; the last one decided the outcome. */
  attempts: RunAttempt[];
}

/** Fold a run's attempts into its result (the scheduler and `haltpoint merge` both do). */
export function resultFromAttempts(run: PlannedRun, attempts: RunAttempt[]): RunResult {
  const last = attempts.at(-1);
  if (!last) throw new Error(`${run.key}: a result needs at least one attempt`);
  const failedAttempts = attempts.filter((a) => a.outcome === "failed");
  const outcome: RunOutcome = last.outcome === "failed" ? "failed" : failedAttempts.length ? "flaky" : "passed";
  const shown = outcome === "passed" ? last : failedAttempts.at(-1)!;
  return {
    run,
    outcome,
    error: outcome === "passed" ? undefined : shown.error,
    failure: outcome === "passed" ? undefined : shown.failure,
    reason: outcome === "passed" ? undefined : shown.reason,
    startedAt: attempts[0]!.startedAt,
    durationMs: attempts.reduce((s, a) => s + a.durationMs, 0),
    logDir: shown.logDir,
    attempts,
  };
}

/** Does this result fail the suite? (A flaky one only with --flaky-fails.) */
export function failsSuite(r: RunResult, flakyFails: boolean): boolean {
  return r.outcome === "failed" || (r.outcome === "flaky" && flakyFails);
}

export interface SuitePlan {
  tests: PlannedTest[];
  runs: PlannedRun[];
  loadErrors: LoadError[];
  jobs: number;
  logDir: string;
  /** A flaky run fails the suite (--flaky-fails). */
  flakyFails?: boolean;
  /** A run that selects no test passes (--pass-with-no-tests); else it exits 4. */
  passWithNoTests?: boolean;
  /** --rerun-failed: the report whose failed runs these are, and when that run started. */
  rerunOf?: { report: string; startedAt: string };
  /** --retries, when given (it overrides each test's `retries`). */
  retries?: number;
  /** This machine's slice of the suite (--shard K/N). */
  shard?: Shard;
  /** Runs are admitted until this long after the start (--stress-duration); `runs` is then
   *  empty in the plan reporters see first, and the runs actually made in the summary. */
  stressMs?: number;
  /** Where it ran (versions, host): for the HTML report's summary. */
  host?: HostFacts;
}

export interface SuiteSummary {
  plan: SuitePlan;
  results: RunResult[];
  /** Runs never started (Ctrl-C stopped admission). */
  notRun: PlannedRun[];
  interrupted: boolean;
  /** Why runs stopped being started (--until-fail, --max-fail, Ctrl-C), if they did. */
  stop?: StopReason;
  startedAt: number;
  durationMs: number;
}

/** The exit status (docs/cli.md): 0 passed, 1 a test failed (or was flaky, with
 *  --flaky-fails), 2 a file could not load, 4 no test was selected (unless
 *  --pass-with-no-tests), 130 interrupted. (3, a report could not be written, is set by runCommand.) */
export function exitStatus(s: SuiteSummary): number {
  if (s.interrupted) return 130;
  if (s.plan.loadErrors.length) return 2;
  if (!s.plan.tests.length && !s.plan.passWithNoTests) return NO_TESTS_EXIT_STATUS;
  return s.results.some((r) => failsSuite(r, s.plan.flakyFails ?? false)) ? 1 : 0;
}

/** A report (--json, --junit, --html) could not be written; the tests' outcome is in the others. */
export const REPORT_WRITE_EXIT_STATUS = 3;

/** Like nextest's: a run that selects no test (a --filter typo, an empty shard) is not a pass. */
export const NO_TESTS_EXIT_STATUS = 4;

/** The orchestrator's words for what ended a failed attempt or run (a timeout, a crash), if it did. */
export function reasonOf(a: { failure?: Failure; reason?: string }): string | undefined {
  return a.failure ? failureReason(a.failure) : a.reason;
}

/** A failed attempt's or run's one message: the orchestrator's reason, else the script's error. */
export function failureMessage(a: { failure?: Failure; reason?: string; error?: SerializedError }): string {
  return reasonOf(a) ?? a.error?.message ?? "failed";
}

export function runMessage(r: RunResult): string {
  if (r.outcome === "passed") return "";
  return failureMessage(r);
}
