import type { WorkerEvent } from "../../worker/events.ts";
import type { PlannedRun } from "../plan.ts";
import { runMessage, type RunResult } from "../results.ts";

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

export function formatResult(r: RunResult): string {
  const d = seconds(r.durationMs);
  return r.outcome === "passed" ? `${prefix(r.run)} PASS (${d})` : `!!! ${prefix(r.run)} FAIL (${d}): ${oneLine(runMessage(r))}`;
}

export function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function oneLine(s: string): string {
  const lines = s.split("\n");
  return lines.length > 1 ? `${lines[0]} …` : s;
}
