// `--shard K/N --durations REPORT.json…`: shards balanced by measured time. Hash shards
// (shard.ts) need no history but ignore how long tests take, so one shard can get the few
// slow tests and finish long after the others. With the durations of an earlier run, tests
// are placed greedily, longest first, each on the shard with the least work so far
// (Graham's LPT rule: the longest shard is within 4/3 of the best possible). Every machine
// computes the same assignment from the same reports: ties break by name and shard number.

/** How long each test took (ms), by test name. */
export type Durations = ReadonlyMap<string, number>;

export interface DurationAssignment {
  /** Test name → shard (1-based). */
  shardOf: Map<string, number>;
  /** Estimated work per shard (ms), index 0 = shard 1. */
  loads: number[];
  /** Tests that had no duration and were given `fallbackMs`. */
  unknown: string[];
  /** The median of the known durations (1 when none is known). */
  fallbackMs: number;
}

export function median(values: readonly number[]): number {
  if (!values.length) return 1;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Assign `names` to `total` shards by duration. Tests not in `durations` count as the
 * median of those that are (a new test is probably typical). Deterministic: the result
 * depends on the set of names, the durations and `total` only (not on the input order).
 */
export function assignByDuration(names: readonly string[], durations: Durations, total: number): DurationAssignment {
  if (!Number.isSafeInteger(total) || total < 1) throw new Error(`shard total must be a positive integer, got ${total}`);
  const unique = [...new Set(names)];
  const known = unique.filter((n) => durations.has(n)).map((n) => Math.max(0, durations.get(n)!));
  const fallbackMs = median(known);
  const unknown = unique.filter((n) => !durations.has(n)).sort();
  const weighted = unique.map((name) => ({ name, ms: durations.has(name) ? Math.max(0, durations.get(name)!) : fallbackMs }));
  weighted.sort((a, b) => b.ms - a.ms || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const loads = new Array<number>(total).fill(0);
  const counts = new Array<number>(total).fill(0);
  const shardOf = new Map<string, number>();
  for (const t of weighted) {
    // The least loaded shard; among equals the one with fewer tests, then the lowest number.
    let best = 0;
    for (let k = 1; k < total; k++) {
      if (loads[k]! < loads[best]! || (loads[k] === loads[best] && counts[k]! < counts[best]!)) best = k;
    }
    loads[best]! += t.ms;
    counts[best]!++;
    shardOf.set(t.name, best + 1);
  }
  return { shardOf, loads, unknown, fallbackMs };
}

/** A report's runs, as far as durations need them (a `haltpoint run --json` report). */
export interface ReportDurations {
  tests: { name: string; runs: { durationMs: number; attempts?: { durationMs: number }[] }[] }[];
}

/**
 * Each test's duration in earlier reports: the mean over its runs of one attempt's time
 * (a run that was retried counts each attempt: a flaky test costs its retries too, so the
 * run's whole time is used). Tests with no run in any report are absent.
 */
export function durationsFromReports(reports: readonly ReportDurations[]): Map<string, number> {
  const sums = new Map<string, { total: number; runs: number }>();
  for (const r of reports) {
    for (const t of r.tests) {
      for (const run of t.runs) {
        if (typeof run.durationMs !== "number" || !Number.isFinite(run.durationMs)) continue;
        const s = sums.get(t.name) ?? { total: 0, runs: 0 };
        s.total += run.durationMs;
        s.runs++;
        sums.set(t.name, s);
      }
    }
  }
  return new Map([...sums].map(([name, s]) => [name, s.total / s.runs]));
}
