import { basename } from "node:path";
import { pathToFileURL } from "node:url";
import type { TestDefinition } from "../index.ts";
import { describeThrown } from "../common/describe-thrown.ts";
import { TEST_FILE_RE } from "../common/test-files.ts";
import { RESERVED_NAMES } from "../common/context-names.ts";
import { definitionProblem } from "./test-definition.ts";
import { resolveNodes, type ResolvedNode } from "../vm/node-options.ts";

export interface LoadedTest {
  name: string;
  def: TestDefinition;
  nodes: ResolvedNode[];
  globalTimeout: number;
  enableDebugHook: boolean;
  /** `sshBackdoor:` in the test, if it says. */
  sshBackdoor?: boolean;
  /** Retries after a failure (`retries:`), default 0. */
  retries: number;
}

/** An error that is the test file's fault: reported as one line naming the file. */
export class TestFileError extends Error {
  override name = "TestFileError";
}

export const DEFAULT_GLOBAL_TIMEOUT = 3600;

export function defaultTestName(file: string): string {
  return basename(file).replace(TEST_FILE_RE, "");
}

const modules = new Map<string, Promise<{ default?: unknown }>>();

/** A worker imports each file once (in a CommonJS package too: worker/resolve-haltpoint.mjs): every `import()` would cross tsx's loader thread. */
function importOnce(file: string): Promise<{ default?: unknown }> {
  let p = modules.get(file);
  if (!p) modules.set(file, (p = import(pathToFileURL(file).href)));
  return p;
}

/** Import a test file (in this worker) and check what it declares. */
export async function loadTestFile(file: string, defaultBackend: string): Promise<LoadedTest> {
  let mod: { default?: unknown };
  try {
    mod = await importOnce(file);
  } catch (e) {
    throw new TestFileError(`${file}: cannot load: ${loadFailure(file, e)}`);
  }
  const def = declaredTest(mod) as TestDefinition | undefined;
  if (def === undefined) throw new TestFileError(`${file}: no default export (export default defineTest({ … }), or module.exports = defineTest({ … }))`);
  if (typeof def !== "object" || def === null || typeof def.testScript !== "function") {
    throw new TestFileError(`${file}: the default export is not a test (use export default defineTest({ name, nodes, testScript }))`);
  }
  let nodes: ResolvedNode[];
  try {
    nodes = resolveNodes(def.nodes, defaultBackend, RESERVED_NAMES);
  } catch (e) {
    throw new TestFileError(`${file}: ${firstLine(e)}`);
  }
  // A plain object (no defineTest) gets the same checks.
  const problem = definitionProblem(def);
  if (problem) throw new TestFileError(`${file}: ${problem}`);
  const globalTimeout = def.globalTimeout ?? DEFAULT_GLOBAL_TIMEOUT;
  const retries = def.retries ?? 0;
  return { name: def.name ?? defaultTestName(file), def, nodes, globalTimeout, enableDebugHook: def.enableDebugHook === true, retries, sshBackdoor: typeof def.sshBackdoor === "boolean" ? def.sshBackdoor : undefined };
}

/** The test a module declares: `export default` in ESM; from a file compiled to CommonJS
 *  (a .vmtest.cts) `module.exports` is the default, with `export default` under it as `.default`. */
function declaredTest(mod: { default?: unknown }): unknown {
  const d = mod.default as { default?: unknown; testScript?: unknown } | undefined;
  if (d !== null && typeof d === "object" && typeof d.testScript !== "function" && d.default !== undefined) return d.default;
  return d;
}

/** Why a file did not load, with what to do about the causes a user can fix. */
function loadFailure(file: string, e: unknown): string {
  const code = (e as { code?: string } | null)?.code;
  const line = firstLine(e);
  if ((code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") && /['"]haltpoint['"]/.test(line)) {
    return `${line} (install it in this project: npm install --save-dev haltpoint)`;
  }
  if (/not in cache|in a cycle/.test(line) || file.endsWith(".cts")) {
    return `${line} (TypeScript compiled to CommonJS cannot require() haltpoint, an ES module, on this Node: write the test with import/export, or as a .vmtest.cjs with require)`;
  }
  return line;
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : describeThrown(e);
  const lines = msg.split("\n").map((l) => l.trim()).filter(Boolean);
  // esbuild's transform errors put the useful line (file:line:col: ERROR: …) second.
  const err = lines.find((l) => /ERROR:/.test(l));
  return (err ?? lines[0] ?? "unknown error").replace(/^.*?(\d+:\d+): ERROR:/, "line $1:");
}
