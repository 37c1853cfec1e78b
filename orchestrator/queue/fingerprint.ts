// The suite fingerprint: hosts of one queue must run the same suite. It is haltpoint's
// version, each selected test file's contents (by its path relative to the working
// directory: hosts check the project out in different places) and the options that change
// what a run is or how the suite is judged. The first host stores it with the queue; a
// host whose fingerprint differs refuses to join, in one line saying what differs.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { relative } from "node:path";
import type { PlannedTest } from "../selection/plan.ts";

export interface SuiteFingerprint {
  version: string;
  /** sha256 over the test files' contents and the run options (hex). */
  hash: string;
  /** Per test file (relative path) → sha256 of its contents: to name the file that differs. */
  files: Record<string, string>;
}

/** Options that change a run or the suite's outcome: part of the fingerprint. */
export interface FingerprintOptions {
  repeat: number;
  retries?: number;
  flakyFails: boolean;
  maxFail?: number;
  stressMs?: number;
}

export async function suiteFingerprint(version: string, tests: readonly PlannedTest[], o: FingerprintOptions, cwd = process.cwd()): Promise<SuiteFingerprint> {
  const files: Record<string, string> = {};
  for (const f of [...new Set(tests.map((t) => t.file))].sort()) {
    files[relative(cwd, f)] = createHash("sha256").update(await readFile(f)).digest("hex");
  }
  const settings = [...tests]
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((t) => ({ name: t.name, file: relative(cwd, t.file), retries: t.retries ?? 0, globalTimeout: t.globalTimeout, nodes: t.nodes.map((n) => [n.name, n.backend]) }));
  const options = { repeat: o.repeat, retries: o.retries ?? null, flakyFails: o.flakyFails, maxFail: o.maxFail ?? null, stressMs: o.stressMs ?? null };
  const hash = createHash("sha256").update(JSON.stringify({ version, files, settings, options })).digest("hex");
  return { version, hash, files };
}

/** Why `theirs` (the queue's) and `ours` differ, in one line; undefined when they match. */
export function fingerprintMismatch(theirs: SuiteFingerprint, ours: SuiteFingerprint): string | undefined {
  if (theirs.hash === ours.hash) return undefined;
  if (theirs.version !== ours.version) return `the queue's suite runs haltpoint ${theirs.version}, this host ${ours.version}`;
  const names = [...new Set([...Object.keys(theirs.files), ...Object.keys(ours.files)])].sort();
  const changed = names.filter((n) => theirs.files[n] !== ours.files[n]);
  if (changed.length) {
    const what = changed.map((n) => (!(n in theirs.files) ? `${n} (only here)` : !(n in ours.files) ? `${n} (not here)` : n));
    return `test files differ from the queue's suite: ${what.slice(0, 3).join(", ")}${what.length > 3 ? ` and ${what.length - 3} more` : ""}`;
  }
  return "the run options (--repeat, --retries, --max-fail, --flaky-fails, timeouts or nodes) differ from the queue's suite";
}
