/**
 * A seeded synthetic suite with long-tailed durations (ms): Pareto(α = 1.2) from 0.5 s, so
 * a few tests take most of the time, as in real VM suites. Used by the sharding tests and
 * bench/shard-balance.
 */
export function longTailedSuite(n: number, seed = 42): Map<string, number> {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32; // LCG (Numerical Recipes)
  return new Map(Array.from({ length: n }, (_, i) => [`test-${String(i).padStart(3, "0")}`, Math.round(500 / rand() ** (1 / 1.2))]));
}
