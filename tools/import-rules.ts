// Who may import whom: the one table `npm run lint` checks (tools/check-imports.ts).
// Imports run one way: machines (vm/) at the bottom know nothing of scheduling or
// breakpoints; the shared words (common/) every thread uses; the breakpoint and bundle
// machinery (hooks/) on top of machines; a test's run in a worker (worker/); the main
// thread (orchestrator/), which starts workers but never imports their code.
// Like Playwright Test's DEPS.list files, in one place.

export interface FolderRule {
  /** The importing files: a folder ("vm/") or one file ("orchestrator/commands/repl.ts"); the longest match wins. */
  from: string;
  /** What they may import (folders or files of this repository); packages and node: are always allowed. */
  may: string[];
  /** What they may import for its types only (`import type`), never running its code. */
  mayType?: string[];
  /** Why, for the error message and the reader. */
  why: string;
}

export const IMPORT_RULES: FolderRule[] = [
  { from: "vm/", may: ["vm/", "common/teardown.ts", "package-root.ts"], why: "machines know nothing of tests, scheduling or breakpoints" },
  { from: "common/", may: ["common/"], mayType: ["vm/"], why: "the shared words depend on nothing but themselves (a task names a machine runtime's type)" },
  { from: "hooks/", may: ["hooks/", "common/", "vm/", "package-root.ts"], why: "breakpoints and bundles act on machines, in a worker or the main thread, but never schedule" },
  { from: "worker/", may: ["worker/", "hooks/", "common/", "vm/", "package-root.ts"], mayType: ["index.ts"], why: "a worker runs one test and reports typed events; the main thread puts them into words" },
  { from: "orchestrator/", may: ["orchestrator/", "hooks/", "common/", "vm/", "package-root.ts"], why: "the main thread starts workers by file URL and hears typed events; it never loads worker code" },
  {
    from: "orchestrator/commands/repl.ts",
    may: ["orchestrator/", "hooks/", "common/", "vm/", "worker/", "package-root.ts"],
    why: "`haltpoint repl` runs a test's machines in the main thread, with the worker's driver",
  },
  { from: "worker/revive-test.ts", may: ["worker/", "hooks/", "common/", "vm/", "index.ts"], why: "the pseudo-test a revive runs is a test file: it uses the package's API" },
  { from: "index.ts", may: ["vm/", "worker/", "common/", "package-root.ts"], why: "the package's API is what a test file uses" },
  { from: "package-root.ts", may: [], why: "the package's root is a leaf" },
];

/** The folders whose imports are checked (tests, benches, examples and tools may import anything). */
export const CHECKED = ["common/", "vm/", "hooks/", "worker/", "orchestrator/", "index.ts", "package-root.ts"];
