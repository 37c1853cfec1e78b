// Which files each test file loads: the test file itself and every local file it imports,
// directly or through another (helpers, fixtures, shared node definitions). `haltpoint run
// --watch` reruns a test when any of them changes.
//
// The graph comes from esbuild, the parser tsx itself runs these files through: a bundle pass
// that writes nothing and reports its inputs (`metafile`), with every package left external.
// It resolves `import`, `export … from`, `require()` and literal `import()` the way Node and
// tsx do (extensions, index files, tsconfig paths), in .ts, .mts, .cts and .js alike, which a
// hand-rolled import scanner would only approximate. Recording what a worker really loaded
// would also catch computed imports, but a worker's module cache outlives one run, so a
// second load of a shared helper records nothing (esbuild sees every file every time).
import { resolve } from "node:path";
import { build } from "esbuild";

export interface TestImports {
  /** Absolute paths of the local files the test file loads, itself included. */
  files: Set<string>;
  /** Why the graph could not be read (a syntax error while the file is being edited): only the file itself and what was known before count. */
  error?: string;
}

/** The local files `testFile` loads, by esbuild's resolution. Never throws. */
export async function importsOf(testFile: string): Promise<TestImports> {
  const file = resolve(testFile);
  try {
    const r = await build({
      entryPoints: [file],
      bundle: true,
      write: false,
      metafile: true,
      platform: "node",
      format: "esm",
      packages: "external",
      logLevel: "silent",
      absWorkingDir: "/",
      // Top-level await and every other newer syntax must pass: nothing here is run.
      target: "esnext",
      // Anything that is not code (a .json fixture, a text file) is an input too.
      loader: { ".json": "json", ".txt": "text", ".sh": "text" },
    });
    const files = new Set(Object.keys(r.metafile.inputs).filter((k) => !k.includes(":")).map((k) => resolve("/", k)));
    files.add(file);
    return { files };
  } catch (e) {
    const errors = (e as { errors?: { text: string; location?: { file: string; line: number } | null }[] }).errors;
    const first = errors?.[0];
    const error = first ? `${first.location ? `${first.location.file}:${first.location.line}: ` : ""}${first.text}` : (e as Error).message;
    return { files: new Set([file]), error };
  }
}

/** Test file → the files it loads; the inverse question ("which tests does this change touch?") is `affectedBy`. */
export class ImportGraph {
  private readonly byTest = new Map<string, Set<string>>();

  /** Read (or read again) the imports of these test files; a file whose graph cannot be read keeps its last known one, plus itself. */
  async update(testFiles: Iterable<string>): Promise<{ file: string; error: string }[]> {
    const errors: { file: string; error: string }[] = [];
    await Promise.all(
      [...testFiles].map(async (t) => {
        const abs = resolve(t);
        const got = await importsOf(abs);
        if (got.error) {
          errors.push({ file: abs, error: got.error });
          this.byTest.set(abs, new Set([...(this.byTest.get(abs) ?? []), ...got.files]));
        } else this.byTest.set(abs, got.files);
      }),
    );
    return errors;
  }

  /** Forget test files that are gone (deleted, or no longer selected). */
  keepOnly(testFiles: Iterable<string>): void {
    const keep = new Set([...testFiles].map((f) => resolve(f)));
    for (const t of this.byTest.keys()) if (!keep.has(t)) this.byTest.delete(t);
  }

  /** The test files that load any of `changed`. */
  affectedBy(changed: Iterable<string>): string[] {
    const c = [...changed].map((f) => resolve(f));
    return [...this.byTest].filter(([, files]) => c.some((f) => files.has(f))).map(([t]) => t).sort();
  }

  /** Every file some test loads (what the watcher must watch). */
  allFiles(): Set<string> {
    return new Set([...this.byTest.values()].flatMap((s) => [...s]));
  }

  get tests(): string[] {
    return [...this.byTest.keys()].sort();
  }
}
