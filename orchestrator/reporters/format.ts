import type { WorkerEvent } from "../../common/events.ts";
import type { PlannedRun } from "../selection/plan.ts";
import { failureMessage, runMessage, type RunAttempt, type RunResult } from "../results.ts";

/** `login#3 server:` — the prefix every line of a run carries. */
export function prefix(run: PlannedRun, machine?: string): string {
  return machine ? `${run.key} ${machine}:` : `${run.key}:`;
}

/** One event as one plain line, or undefined for events that are not shown. */
export function formatEvent(run: PlannedRun, e: WorkerEvent): string | undefined {
  switch (e.t) {
    case "log":
      return `${prefix(run, e.machine)} ${e.msg}`;
    case "console":
      return `${prefix(run, e.machine)} ${e.line}`;
    case "subtest":
      if (e.phase === "start") return `${prefix(run)} subtest: ${e.name}`;
      if (e.phase === "pass") return `${prefix(run)} subtest ok: ${e.name} (${seconds(e.durationMs ?? 0)})`;
      return `${prefix(run)} subtest failed: ${e.name}: ${e.error?.message ?? ""}`;
    default:
      return undefined;
  }
}

/**
 * A run's result as one line: `login#3: PASS (1.20 s)`, `!!! login#3: FAIL (1.20 s): …`,
 * `login#3: FLAKY (2 attempts, 2.41 s): attempt 1 failed: …` (failed, then passed on a retry).
 */
export function formatResult(r: RunResult): string {
  const n = r.attempts.length;
  const d = n > 1 ? `${n} attempts, ${seconds(r.durationMs)}` : seconds(r.durationMs);
  if (r.outcome === "passed") return `${prefix(r.run)} PASS (${d})`;
  if (r.outcome === "flaky") {
    const failed = r.attempts.filter((a) => a.outcome === "failed");
    const which = failed.length === 1 ? `attempt ${failed[0]!.attempt}` : `attempts ${failed.map((a) => a.attempt).join(", ")}`;
    return `${prefix(r.run)} FLAKY (${d}): ${which} failed: ${oneLine(runMessage(r))}`;
  }
  return `!!! ${prefix(r.run)} FAIL (${d}): ${oneLine(runMessage(r))}`;
}

/** `login#3: attempt 1 failed, retrying (attempt 2): …` */
export function formatRetry(run: PlannedRun, failed: RunAttempt, next: number): string {
  return `${prefix(run)} attempt ${failed.attempt} failed, retrying (attempt ${next}): ${oneLine(failureMessage(failed))}`;
}

/** 0.0123 → "1.2%", 0.00377 → "0.38%". */
export function percent(x: number): string {
  const p = x * 100;
  if (p === 0 || p === 100) return `${p}%`;
  return `${p < 1 ? p.toFixed(2) : p.toFixed(1)}%`;
}

/** `SLOW t#2: still running after 60.02 s (slow timeout 60.00 s)`; the attempt when retried. */
export function formatSlow(run: PlannedRun, attempt: number, elapsedMs: number, slowTimeoutMs: number): string {
  return `SLOW ${run.key}${attempt > 1 ? ` (attempt ${attempt})` : ""}: still running after ${seconds(elapsedMs)} (slow timeout ${seconds(slowTimeoutMs)})`;
}

export function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function oneLine(s: string): string {
  const lines = s.split("\n");
  return lines.length > 1 ? `${lines[0]} …` : s;
}
