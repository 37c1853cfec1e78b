import type { CollectedNode } from "../worker/events.ts";

/** A test file that loaded: what it declares. */
export interface PlannedTest {
  file: string;
  name: string;
  nodes: CollectedNode[];
  globalTimeout: number;
  enableDebugHook: boolean;
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

/** Expand tests into runs (`--repeat`), keeping those whose name or file matches `filter`. */
export function expandRuns(tests: PlannedTest[], repeat: number, filter?: RegExp): PlannedRun[] {
  const runs: PlannedRun[] = [];
  const selected = filter ? tests.filter((t) => filter.test(t.name) || filter.test(t.file)) : tests;
  // Interleave repeats (a#1 b#1 a#2 b#2 …) so a long suite gives every test an early run.
  for (let i = 1; i <= repeat; i++) {
    for (const test of selected) runs.push({ key: `${test.name}#${i}`, test, index: i });
  }
  return runs;
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
