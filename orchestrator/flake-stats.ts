// Flake statistics: how often a test fails, with the uncertainty of that rate, and its
// failures grouped by cause. Pure functions of the run results (`haltpoint merge` computes
// the same from shard reports).
import { failureSignature } from "./failure-signature.ts";
import { failureMessage, type RunResult } from "./results.ts";

/** z for a two-sided 95% interval (the 0.975 quantile of the standard normal). */
export const Z95 = 1.959963984540054;

/**
 * The Wilson score interval for `failures` out of `trials` (Wilson 1927; Newcombe 1998
 * method 3): unlike the textbook p ± z·√(p(1-p)/n) it stays inside [0, 1] and does not
 * collapse to a point at 0 or n failures, which is exactly where flake hunting lives.
 */
export function wilsonInterval(failures: number, trials: number, z = Z95): { low: number; high: number } {
  if (!(trials > 0)) return { low: 0, high: 1 };
  if (failures < 0 || failures > trials) throw new RangeError(`wilsonInterval: ${failures} failures out of ${trials} trials`);
  const p = failures / trials;
  const z2 = z * z;
  const denom = 1 + z2 / trials;
  const centre = (p + z2 / (2 * trials)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / trials + z2 / (4 * trials * trials));
  // Exact at the edges (rounding would otherwise give -1e-17 or 1.0000000000000002).
  return { low: failures === 0 ? 0 : Math.max(0, centre - half), high: failures === trials ? 1 : Math.min(1, centre + half) };
}

/** Where a failure happened: run number, attempt (1 unless retried), its logs. */
export interface FailureOccurrence {
  run: number;
  attempt: number;
  logDir: string;
}

/** Failed attempts of one test that share a signature. */
export interface FailureGroup {
  signature: string;
  /** The first occurrence's message, as it was (first line). */
  example: string;
  occurrences: FailureOccurrence[];
}

export interface TestFlakeStats {
  name: string;
  file: string;
  runs: number;
  /** Every execution, retries included: the trials of the failure rate. */
  attempts: number;
  /** Failed attempts. */
  failures: number;
  /** Runs that failed, then passed on a retry. */
  flakyRuns: number;
  /** Runs whose every attempt failed. */
  failedRuns: number;
  rate: number;
  low: number;
  high: number;
  /** Most frequent first. */
  groups: FailureGroup[];
}

/**
 * Per test: attempts, failures, the failure rate (failed attempts / attempts) with its 95%
 * Wilson interval, failures grouped by signature. Tests in the order of `order` (names),
 * then in order of first appearance.
 */
export function flakeStats(results: RunResult[], order: string[] = []): TestFlakeStats[] {
  const byTest = new Map<string, RunResult[]>();
  for (const name of order) byTest.set(name, []);
  for (const r of results) {
    let l = byTest.get(r.run.test.name);
    if (!l) byTest.set(r.run.test.name, (l = []));
    l.push(r);
  }
  const out: TestFlakeStats[] = [];
  for (const [name, runs] of byTest) {
    if (!runs.length) continue;
    runs.sort((a, b) => a.run.index - b.run.index);
    const groups = new Map<string, FailureGroup>();
    let attempts = 0;
    let failures = 0;
    for (const r of runs) {
      for (const a of r.attempts) {
        attempts++;
        if (a.outcome !== "failed") continue;
        failures++;
        const signature = failureSignature(a);
        let g = groups.get(signature);
        if (!g) groups.set(signature, (g = { signature, example: firstLine(failureMessage(a)), occurrences: [] }));
        g.occurrences.push({ run: r.run.index, attempt: a.attempt, logDir: a.logDir });
      }
    }
    const { low, high } = wilsonInterval(failures, attempts);
    out.push({
      name,
      file: runs[0]!.run.test.file,
      runs: runs.length,
      attempts,
      failures,
      flakyRuns: runs.filter((r) => r.outcome === "flaky").length,
      failedRuns: runs.filter((r) => r.outcome === "failed").length,
      rate: attempts ? failures / attempts : 0,
      low,
      high,
      groups: [...groups.values()].sort((a, b) => b.occurrences.length - a.occurrences.length),
    });
  }
  return out;
}

function firstLine(s: string): string {
  return s.split("\n").find((l) => l.trim()) ?? s;
}
