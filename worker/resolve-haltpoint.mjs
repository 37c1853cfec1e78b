// Module hooks, registered by worker/entry.mjs (and `haltpoint repl`) after tsx's:
// - a test file's `import … from "haltpoint"` gets the copy the worker itself runs (dist/ or,
//   from sources, index.ts), whatever package.json exports (dist/). One copy of haltpoint per
//   thread is what keeps `instanceof MachineError` true in test files. (A `--conditions` flag
//   would do the same, but a worker's execArgv rejects any V8 flag the user gave node, so it
//   cannot be built from process.execArgv.)
// - a `.vmtest.ts`, `.vmtest.cts` or `.vmtest.js` written with `import`/`export` loads as an ES
//   module even in a CommonJS package (what `npm init -y` makes): Node (on 20, with tsx) would
//   treat it as CommonJS and fail with "Cannot require() ES Module … in a cycle", "request for
//   './vm/errors.js' is not in cache" or "Cannot use import statement outside a module". A file
//   with neither stays CommonJS (`require` and `module.exports`).
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

let haltpointIndex;

export function initialize(data) {
  haltpointIndex = data.haltpointIndex;
}

export async function resolve(specifier, context, next) {
  // Through the next hook (tsx's), which knows how to load index.ts.
  if (specifier === "haltpoint") return next(haltpointIndex, context);
  return next(specifier, context);
}

const AMBIGUOUS_TEST_FILE = /\.vmtest\.(ts|cts|js)$/;
const ESM_SYNTAX = /^\s*(import\s*[\w{*"']|export\s+(default|const|let|var|function|async|class|type|interface|\{|\*))/m;

const TS_COMMONJS_SYNTAX = /^\s*(import\s+[\w$]+\s*=\s*require\s*\(|export\s*=)/m;

export async function load(url, context, next) {
  if (url.startsWith("file:") && AMBIGUOUS_TEST_FILE.test(new URL(url).pathname)) {
    const result = await next(url, context);
    if (result.format !== "commonjs") return result;
    const source = await readFile(fileURLToPath(url), "utf8");
    if (!ESM_SYNTAX.test(source) || TS_COMMONJS_SYNTAX.test(source)) return result;
    return next(url, { ...context, format: "module" });
  }
  return next(url, context);
}
