import type { SerializedError } from "../../common/events.ts";
import type { PlannedRun } from "../selection/plan.ts";
import type { RunAttempt, SuiteSummary } from "../results.ts";
import type { ReportEvent, Reporter } from "../report-events.ts";
import { exitStatus, failureMessage, reasonOf } from "../results.ts";
import type { Failure, StopReason } from "../../common/failure-kinds.ts";
import { stopText } from "./failure-text.ts";
import { flakeStats } from "../flake-stats.ts";
import type { Shard } from "../selection/shard.ts";
import type { HostFacts } from "../../vm/host-facts.ts";
import { writeReport } from "./atomic-write.ts";
import { FAILED_LOG_LINES, type AttemptLines } from "./attempt-lines.ts";

/**
 * The JSON report (`--json FILE`). Version 2 carries everything `haltpoint merge` needs to
 * rebuild a suite's summary from shard reports: every run with its attempts (outcome,
 * error, reason, timing, logs, the tail of a failed attempt's output), the runs not run,
 * the load errors, and the options that decide the exit status.
 */
export const JSON_REPORT_FORMAT = "haltpoint-report";
export const JSON_REPORT_VERSION = 2;

export interface JsonAttempt {
  attempt: number;
  outcome: "passed" | "failed";
  startedAt: string;
  durationMs: number;
  error?: SerializedError;
  /** The orchestrator's words (a timeout, a crash, Ctrl-C), as version 2 had them: `failure` says it as data. */
  reason?: string;
  /** What ended a failed attempt: its kind (failure-kinds.ts), fields of that kind, and its message. */
  failure?: JsonFailure;
  logDir: string;
  /** The last lines of a failed attempt's output. */
  log?: string[];
  /** The --jobs slot that ran it (0-based). */
  slot?: number;
  /** Where it halted at a breakpoint. */
  halts?: JsonHaltSpan[];
  /** Queue mode: the host that ran it (its logs and bundles are there). */
  host?: string;
  /** Queue mode: hosts that took this run before and died holding it (their lease expired). */
  lostHosts?: string[];
}

/** A failure as data plus its one-line message (the reason, else the script's error). */
export type JsonFailure = Failure & { message: string };

export interface JsonHaltSpan {
  id: string;
  kind: "failure" | "breakpoint";
  startedAt: string;
  durationMs: number;
  by?: string;
}

export interface JsonRun {
  run: number;
  key: string;
  outcome: "passed" | "failed" | "flaky";
  startedAt: string;
  durationMs: number;
  /** The (last) failure's message, as version 1 had it. */
  error?: string;
  reason?: string;
  /** The (last) failed attempt's failure. */
  failure?: JsonFailure;
  logDir: string;
  attempts: JsonAttempt[];
}

export interface JsonFailureGroup {
  signature: string;
  example: string;
  count: number;
  occurrences: { run: number; attempt: number; logDir: string }[];
}

export interface JsonTest {
  name: string;
  file: string;
  /** Retries the test file declares (`retries:`); --retries, if given, is the report's `retries`. */
  retries: number;
  runs: JsonRun[];
  /** Run numbers planned but never started (--until-fail, Ctrl-C). */
  notRun: number[];
  /** Derived from `runs` (merge recomputes it). */
  stats: {
    runs: number;
    attempts: number;
    failures: number;
    flakyRuns: number;
    failedRuns: number;
    failureRate: number;
    wilson95: { low: number; high: number };
    groups: JsonFailureGroup[];
  };
}

export interface JsonReport {
  format: typeof JSON_REPORT_FORMAT;
  version: number;
  startedAt: string;
  durationMs: number;
  interrupted: boolean;
  /** Why runs stopped being started: --until-fail, --max-fail or an interrupt (null: they were not). */
  stoppedBy?: (StopReason & { message: string }) | null;
  exitStatus: number;
  flakyFails: boolean;
  /** --pass-with-no-tests: an empty run passed. */
  passWithNoTests?: boolean;
  /** The report whose failed runs this run ran again (--rerun-failed): its runs continue those. */
  rerunOf?: { report: string; startedAt: string };
  /** --retries, if given (it overrode every test's own). */
  retries: number | null;
  shard: Shard | null;
  /** --stress-duration in ms, if given. */
  stressMs?: number;
  jobs: number;
  logDir: string;
  /** Versions and host (absent in reports of older haltpoints and in merged reports). */
  host?: HostFacts;
  summary: { runs: number; passed: number; flaky: number; failed: number; notRun: number; loadErrors: number };
  tests: JsonTest[];
  loadErrors: { file: string; error: string; failure?: { kind: "load-error"; message: string } }[];
}

export function buildJsonReport(s: SuiteSummary, lines?: AttemptLines): JsonReport {
  const byTest = new Map<string, JsonTest>();
  const stats = new Map(flakeStats(s.results).map((t) => [t.name, t]));
  for (const t of s.plan.tests) {
    const st = stats.get(t.name);
    byTest.set(t.name, {
      name: t.name,
      file: t.file,
      retries: t.retries ?? 0,
      runs: [],
      notRun: [],
      stats: {
        runs: st?.runs ?? 0,
        attempts: st?.attempts ?? 0,
        failures: st?.failures ?? 0,
        flakyRuns: st?.flakyRuns ?? 0,
        failedRuns: st?.failedRuns ?? 0,
        failureRate: st?.rate ?? 0,
        wilson95: { low: st?.low ?? 0, high: st?.high ?? 1 },
        groups: (st?.groups ?? []).map((g) => ({ signature: g.signature, example: g.example, count: g.occurrences.length, occurrences: g.occurrences })),
      },
    });
  }
  for (const r of [...s.results].sort((a, b) => a.run.index - b.run.index)) {
    byTest.get(r.run.test.name)?.runs.push({
      run: r.run.index,
      key: r.run.key,
      outcome: r.outcome,
      startedAt: new Date(r.startedAt).toISOString(),
      durationMs: Math.round(r.durationMs),
      error: r.error?.message,
      reason: reasonOf(r),
      ...(r.failure ? { failure: jsonFailure(r) } : {}),
      logDir: r.logDir,
      attempts: r.attempts.map((a) => jsonAttempt(r.run, a, lines)),
    });
  }
  for (const n of [...s.notRun].sort((a, b) => a.index - b.index)) byTest.get(n.test.name)?.notRun.push(n.index);
  const count = (o: string) => s.results.filter((r) => r.outcome === o).length;
  return {
    format: JSON_REPORT_FORMAT,
    version: JSON_REPORT_VERSION,
    startedAt: new Date(s.startedAt).toISOString(),
    durationMs: Math.round(s.durationMs),
    interrupted: s.interrupted,
    stoppedBy: s.stop ? { ...s.stop, message: stopText(s.stop) } : null,
    exitStatus: exitStatus(s),
    flakyFails: s.plan.flakyFails ?? false,
    ...(s.plan.passWithNoTests ? { passWithNoTests: true } : {}),
    ...(s.plan.rerunOf ? { rerunOf: s.plan.rerunOf } : {}),
    retries: s.plan.retries ?? null,
    shard: s.plan.shard ?? null,
    ...(s.plan.stressMs ? { stressMs: s.plan.stressMs } : {}),
    jobs: s.plan.jobs,
    logDir: s.plan.logDir,
    ...(s.plan.host ? { host: s.plan.host } : {}),
    summary: { runs: s.results.length, passed: count("passed"), flaky: count("flaky"), failed: count("failed"), notRun: s.notRun.length, loadErrors: s.plan.loadErrors.length },
    tests: [...byTest.values()],
    loadErrors: s.plan.loadErrors.map((e) => ({ ...e, failure: { kind: "load-error", message: e.error } })),
  };
}

function jsonAttempt(run: PlannedRun, a: RunAttempt, lines: AttemptLines | undefined): JsonAttempt {
  const j: JsonAttempt = { attempt: a.attempt, outcome: a.outcome, startedAt: new Date(a.startedAt).toISOString(), durationMs: Math.round(a.durationMs), logDir: a.logDir };
  if (a.error) j.error = a.error;
  const reason = reasonOf(a);
  if (reason) j.reason = reason;
  if (a.failure) j.failure = jsonFailure(a);
  if (a.slot !== undefined) j.slot = a.slot;
  if (a.halts?.length) j.halts = a.halts.map((h) => ({ ...h, startedAt: new Date(h.startedAt).toISOString(), durationMs: Math.round(h.durationMs) }));
  if (a.host) j.host = a.host;
  if (a.lostHosts?.length) j.lostHosts = a.lostHosts;
  const log = a.outcome === "failed" ? lines?.get(run.key, a.attempt).slice(-FAILED_LOG_LINES) : undefined;
  if (log?.length) j.log = log;
  return j;
}

function jsonFailure(a: { failure?: Failure; reason?: string; error?: SerializedError }): JsonFailure {
  return { ...a.failure!, message: failureMessage(a) };
}

/** `--json FILE`, written at the end; a failed attempt's tail of output comes from the shared `lines`. */
export class JsonReporter implements Reporter {
  constructor(
    private readonly file: string,
    private readonly lines: AttemptLines,
  ) {}

  async report(e: ReportEvent): Promise<void> {
    if (e.kind !== "end") return;
    await writeReport(this.file, JSON.stringify(buildJsonReport(e.summary, this.lines), null, 2) + "\n", "--json report");
  }
}
