// bench/shard-balance: how evenly `--shard K/N` splits a suite's time, by test-name hash
// (the baseline) and by the durations of an earlier run (--durations). The suite is
// synthetic: 200 tests with long-tailed (Pareto) durations, as VM suites have a few slow
// tests. A shard's time is the sum of its tests' durations; the CI waits for the longest.
// "earlier run ±30%" builds the assignment from durations with up to ±30% noise (what an
// earlier run measures) and scores it on the true ones.
//   npm run bench:shards
import { assignByDuration } from "../orchestrator/selection/shard-by-duration.ts";
import { shardOf } from "../orchestrator/selection/shard.ts";
import { longTailedSuite } from "../test/helpers/long-tailed-suite.ts";
import { fmt, printTable } from "./table.ts";

const TESTS = 200;
const durations = longTailedSuite(TESTS);
const names = [...durations.keys()];
const total = names.reduce((s, n) => s + durations.get(n)!, 0);
const longest = Math.max(...durations.values());

let seed = 7;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
const noisy = new Map(names.map((n) => [n, durations.get(n)! * (0.7 + 0.6 * rand())]));

const loadsOf = (shard: (n: string) => number, n: number): number[] => {
  const loads = new Array<number>(n).fill(0);
  for (const t of names) loads[shard(t) - 1]! += durations.get(t)!;
  return loads;
};

const rows: (string | number)[][] = [];
for (const n of [2, 4, 8]) {
  const hash = loadsOf((t) => shardOf(t, n), n);
  const t0 = performance.now();
  const exact = assignByDuration(names, durations, n);
  const assignMs = performance.now() - t0;
  const fromNoisy = assignByDuration(names, noisy, n);
  const variants: [string, number[], string][] = [
    ["hash of the name (baseline)", hash, "—"],
    ["--durations, exact", loadsOf((t) => exact.shardOf.get(t)!, n), fmt(assignMs)],
    ["--durations, earlier run ±30%", loadsOf((t) => fromNoisy.shardOf.get(t)!, n), "—"],
  ];
  for (const [how, loads, ms] of variants) {
    const max = Math.max(...loads);
    const min = Math.min(...loads);
    rows.push([n, how, fmt(max / 1000, 1), fmt(min / 1000, 1), `${fmt(max / min)}x`, `${fmt(max / Math.max(total / n, longest))}x`, `${fmt(max / Math.max(...hash))}x`, ms]);
  }
}
printTable(
  `${TESTS} tests, ${fmt(total / 1000, 0)} s in all, the longest ${fmt(longest / 1000, 1)} s (Pareto α = 1.2 from 0.5 s)`,
  ["N", "shards by", "longest shard s", "shortest shard s", "longest/shortest", "longest vs best possible", "longest vs hash", "assign ms"],
  rows,
);
console.log("\nbest possible: the larger of total/N and the longest single test.");
