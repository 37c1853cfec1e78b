// `--shard K/N` with `--repeat N` or `--stress-duration`: the unit shared out is the run, not
// the test, so a flake hunt of one test spreads over every machine. Every run keeps its
// suite-wide number (`name#i` is the same run whichever shard makes it), so `haltpoint merge`
// of the shards gives one run's report, flake statistics included.
//
// - --repeat, by hash: test t's run i goes to shard ((hash(t) + i - 1) mod N) + 1 — round
//   robin, started at a place set by the name, so shards differ by at most one run per test
//   and a suite of many tests with few repeats still spreads evenly.
// - --repeat, by --durations: Graham's LPT rule over the runs (each weighs its test's time).
// - --stress-duration: every shard runs every test, numbering its rounds K, K+N, K+2N, …
//   (disjoint across shards, no coordination).
import type { PlannedRun, PlannedTest } from "./plan.ts";
import { testHash, type Shard } from "./shard.ts";
import { assignByDuration, type Durations } from "./shard-by-duration.ts";

/** The shard (1-based) of run `index` (1-based) of the test named `name`, by hash. */
export function shardOfRun(name: string, index: number, total: number): number {
  return ((testHash(name) % total) + index - 1) % total + 1;
}

/** This shard's runs of `runs`, by hash (round robin per test). */
export function runsInShard(runs: readonly PlannedRun[], shard: Shard): PlannedRun[] {
  return runs.filter((r) => shardOfRun(r.test.name, r.index, shard.total) === shard.index);
}

/** This shard's runs, balanced by the tests' durations; also each shard's estimated work. */
export function runsInShardByDuration(runs: readonly PlannedRun[], durations: Durations, shard: Shard): { runs: PlannedRun[]; loads: number[]; unknown: string[]; fallbackMs: number } {
  const byKey = new Map<string, number>();
  for (const r of runs) if (durations.has(r.test.name)) byKey.set(r.key, durations.get(r.test.name)!);
  const a = assignByDuration(
    runs.map((r) => r.key),
    byKey,
    shard.total,
  );
  const unknown = [...new Set(runs.filter((r) => !durations.has(r.test.name)).map((r) => r.test.name))].sort();
  return { runs: runs.filter((r) => a.shardOf.get(r.key) === shard.index), loads: a.loads, unknown, fallbackMs: a.fallbackMs };
}

/** The suite-wide number of this shard's `round`-th round (1-based) of --stress-duration. */
export function stressRunNumber(round: number, shard: Shard | undefined): number {
  return shard ? (round - 1) * shard.total + shard.index : round;
}

/** The tests that have at least one of `runs`, in their order. */
export function testsOfRuns(tests: readonly PlannedTest[], runs: readonly PlannedRun[]): PlannedTest[] {
  const names = new Set(runs.map((r) => r.test.name));
  return tests.filter((t) => names.has(t.name));
}
