import type { PlannedRun, PlannedTest } from "../selection/plan.ts";
import { demandOf } from "./resource-budget.ts";

export interface TakeAheadFacts {
  /** The selected tests. */
  tests: PlannedTest[];
  /** The planned runs, in the order they are handed out (none yet with --stress-duration). */
  runs: PlannedRun[];
  /** --stress-duration: runs are made until the time is up, so none is known to be the last. */
  stress: boolean;
  jobs: number;
  /** The memory qemu machines may take at once (--memory). */
  memoryMiB: number;
}

/**
 * Which runs have their worker make the machines of its next run while they run (machines
 * taken ahead, worker/machines-ahead.ts), or undefined for none: a flake hunt, i.e. one test
 * run again and again (--repeat, --until-fail, --stress-duration), all of whose machines are
 * guests, with memory for every worker's run and the next one's; and not among the last
 * --jobs runs, which have no next run on their worker.
 */
export function takeAheadPolicy(f: TakeAheadFacts): ((run: PlannedRun) => boolean) | undefined {
  if (f.tests.length !== 1) return undefined;
  const test = f.tests[0]!;
  if (!test.nodes.length || test.nodes.some((n) => n.backend !== "qemu")) return undefined;
  if (2 * f.jobs * demandOf(test).memoryMiB > f.memoryMiB) return undefined;
  if (f.stress) return () => true;
  const position = new Map(f.runs.map((r, i) => [r.key, i]));
  return (run) => (position.get(run.key) ?? f.runs.length) < f.runs.length - f.jobs;
}
