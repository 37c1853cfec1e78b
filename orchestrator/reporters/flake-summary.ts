import type { TestFlakeStats } from "../flake-stats.ts";
import { percent } from "./format.ts";

/** At most this many run numbers are listed per failure group. */
const MAX_RUNS_LISTED = 20;

/**
 * The flake-statistics block of the summary, for each test with more than one attempt:
 *
 *     third: 20 runs, 1 failed: 5.0% (95% CI 0.89%–23.6%)
 *       1× machine m: command `echo run $((N+N)) fails; exit N` failed (exit code N)
 *          runs: 3
 *          logs: .haltpoint/runs/…/third#3
 */
export function formatFlakeStats(stats: TestFlakeStats[]): { heading: string; lines: { text: string; kind: "test" | "group" | "detail" }[] } {
  const lines: { text: string; kind: "test" | "group" | "detail" }[] = [];
  for (const t of stats) {
    if (t.attempts < 2) continue;
    const runs = `${t.runs} run${t.runs === 1 ? "" : "s"}${t.attempts !== t.runs ? ` (${t.attempts} attempts)` : ""}`;
    const failed = `${t.failures} failed${t.flakyRuns ? `, ${t.flakyRuns} flaky run${t.flakyRuns === 1 ? "" : "s"}` : ""}`;
    lines.push({ text: `${t.name}: ${runs}, ${failed}: ${percent(t.rate)} (95% CI ${percent(t.low)}–${percent(t.high)})`, kind: "test" });
    for (const g of t.groups) {
      lines.push({ text: `  ${g.occurrences.length}× ${g.signature}`, kind: "group" });
      const listed = g.occurrences.slice(0, MAX_RUNS_LISTED).map((o) => (o.attempt > 1 ? `${o.run} (attempt ${o.attempt})` : String(o.run)));
      const more = g.occurrences.length > MAX_RUNS_LISTED ? `, … ${g.occurrences.length - MAX_RUNS_LISTED} more` : "";
      lines.push({ text: `     runs: ${listed.join(", ")}${more}`, kind: "detail" });
      lines.push({ text: `     logs: ${g.occurrences[0]!.logDir}`, kind: "detail" });
    }
  }
  return { heading: "flake statistics (failure rate = failed attempts / attempts, with its 95% Wilson interval)", lines };
}
