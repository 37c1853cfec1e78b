// `--shard auto`: which slice of the suite this CI machine runs, from the variables the CI
// sets for parallel jobs. Each CI numbers its machines its own way (GitLab from 1, the
// others from 0); the result is always haltpoint's 1-based K/N. A Kubernetes Indexed Job
// tells each pod its index but not the number of completions: the user gives it
// (`--shard auto/N`).
import type { Shard } from "./shard.ts";

export interface CiShard {
  shard: Shard;
  /** Which CI and variables it came from, for the line that says so. */
  source: string;
}

interface CiShardVars {
  ci: string;
  index: string;
  total?: string;
  /** The value of `index` for the first machine. */
  base: 0 | 1;
}

const CI_VARS: CiShardVars[] = [
  { ci: "GitLab", index: "CI_NODE_INDEX", total: "CI_NODE_TOTAL", base: 1 },
  { ci: "CircleCI", index: "CIRCLE_NODE_INDEX", total: "CIRCLE_NODE_TOTAL", base: 0 },
  { ci: "Buildkite", index: "BUILDKITE_PARALLEL_JOB", total: "BUILDKITE_PARALLEL_JOB_COUNT", base: 0 },
  { ci: "a Kubernetes Indexed Job", index: "JOB_COMPLETION_INDEX", base: 0 },
];

/** The variable names `--shard auto` reads, for error messages and docs. */
export const CI_SHARD_VARIABLES = CI_VARS.map((v) => (v.total ? `${v.index}/${v.total}` : `${v.index} (with --shard auto/N)`)).join(", ");

/** Is this `auto` or `auto/N`? Returns the given total (undefined for plain `auto`). */
export function parseAutoShard(s: string): { total?: number } | undefined {
  const m = /^\s*auto\s*(?:\/\s*(\d+)\s*)?$/.exec(s);
  if (!m) return undefined;
  if (m[1] === undefined) return {};
  const total = Number(m[1]);
  if (!Number.isSafeInteger(total) || total < 1) throw new Error(`--shard auto/N takes a positive total, got '${s}'`);
  return { total };
}

const wholeNumber = (v: string): number | undefined => (/^\s*\d+\s*$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : undefined);

/**
 * The shard the CI says this machine is. `total` is the N of `--shard auto/N` (required
 * for Kubernetes, and checked against the CI's own total where it has one). Throws an
 * Error with a one-line message when no CI variables are set or they make no sense.
 */
export function shardFromEnv(env: NodeJS.ProcessEnv, total?: number): CiShard {
  for (const v of CI_VARS) {
    const rawIndex = env[v.index];
    if (rawIndex === undefined || rawIndex === "") continue;
    const index = wholeNumber(rawIndex);
    const rawTotal = v.total ? env[v.total] : undefined;
    const ciTotal = rawTotal !== undefined && rawTotal !== "" ? wholeNumber(rawTotal) : undefined;
    const named = `${v.index}=${rawIndex}${v.total && rawTotal !== undefined ? ` ${v.total}=${rawTotal}` : ""}`;
    if (index === undefined) throw new Error(`--shard auto: ${v.index} is '${rawIndex}', not a whole number`);
    if (rawTotal !== undefined && rawTotal !== "" && (ciTotal === undefined || ciTotal < 1)) throw new Error(`--shard auto: ${v.total} is '${rawTotal}', not a positive whole number`);
    if (ciTotal !== undefined && total !== undefined && ciTotal !== total) throw new Error(`--shard auto/${total}: ${v.ci} says ${ciTotal} machines (${named})`);
    const n = ciTotal ?? total;
    if (n === undefined) throw new Error(`--shard auto: ${v.ci} gives ${v.index} but not how many machines there are: use --shard auto/N`);
    const k = index - v.base + 1;
    if (k < 1 || k > n) throw new Error(`--shard auto: ${named} is not a machine of ${n} (${v.ci} numbers them from ${v.base})`);
    return { shard: { index: k, total: n }, source: `${v.ci} (${named}${ciTotal === undefined ? `, total from --shard auto/${n}` : ""})` };
  }
  throw new Error(`--shard auto: no CI shard variables are set (${CI_SHARD_VARIABLES}); give --shard K/N`);
}
