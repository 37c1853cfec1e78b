import type { CollectedNode } from "../../common/events.ts";
import { inShard, type Shard } from "./shard.ts";

/** A test file that loaded: what it declares. */
export interface PlannedTest {
  file: string;
  name: string;
  nodes: CollectedNode[];
  globalTimeout: number;
  enableDebugHook: boolean;
  /** Retries after a failure (`retries:` in the test; --retries overrides). Default 0. */
  retries?: number;
  /** Seconds after which a run is reported SLOW (--slow-timeout or a config file). */
  slowTimeout?: number;
  /** Its runs' directory under --log-dir (safe and unique; see run-dir-names.ts). */
  dirName?: string;
}

/** One run of one test: `name#index`. */
export interface PlannedRun {
  key: string;
  test: PlannedTest;
  index: number;
}

export interface LoadError {
  file: string;
  error: string;
}

/** The tests to run: those whose name or file matches `filter`, then this machine's shard of them. */
export function selectTests(tests: PlannedTest[], filter?: RegExp, shard?: Shard): PlannedTest[] {
  const matching = filter ? tests.filter((t) => filter.test(t.name) || filter.test(t.file)) : tests;
  return inShard(matching, shard);
}

/** Expand tests into runs (`--repeat`), keeping those whose name or file matches `filter`. */
export function expandRuns(tests: PlannedTest[], repeat: number): PlannedRun[] {
  return [...roundsOf(tests, () => true, repeat)];
}

/**
 * Runs in rounds — a#1 b#1 a#2 b#2 … — so a long suite gives every test an early run, for
 * `rounds` rounds or as long as `more()` says (checked before each run is handed out).
 */
export function* roundsOf(tests: PlannedTest[], more: () => boolean, rounds = Infinity): Generator<PlannedRun> {
  if (!tests.length) return;
  for (let i = 1; i <= rounds; i++) {
    for (const test of tests) {
      if (!more()) return;
      yield { key: `${test.name}#${i}`, test, index: i };
    }
  }
}

/**
 * `--stress-duration`: runs numbered on (round after round) until `ms` have passed since the
 * first run was asked for. The scheduler pulls runs one at a time as slots free, so none
 * waits past the deadline. `made` lists every run handed out.
 */
export class StressRuns implements Iterable<PlannedRun> {
  readonly made: PlannedRun[] = [];
  constructor(
    private readonly tests: PlannedTest[],
    private readonly ms: number,
  ) {}
  *[Symbol.iterator](): Generator<PlannedRun> {
    const start = Date.now();
    for (const r of roundsOf(this.tests, () => Date.now() - start < this.ms)) {
      this.made.push(r);
      yield r;
    }
  }
}

/** Two files that declare the same test name would make ambiguous run keys. */
export function findDuplicateNames(tests: PlannedTest[]): LoadError[] {
  const seen = new Map<string, string>();
  const errors: LoadError[] = [];
  for (const t of tests) {
    const other = seen.get(t.name);
    if (other) errors.push({ file: t.file, error: `${t.file}: test name '${t.name}' is already used by ${other}` });
    else seen.set(t.name, t.file);
  }
  return errors;
}
