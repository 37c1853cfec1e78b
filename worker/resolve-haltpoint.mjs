// A module-resolution hook, registered by worker/entry.mjs when the orchestrator runs from
// dist/: a test file's `import … from "haltpoint"` then gets the compiled copy that the
// worker itself runs, not the TypeScript sources that package.json exports by default. One
// copy of haltpoint per thread is what keeps `instanceof MachineError` true in test files.
// (A `--conditions` flag would do the same, but a worker's execArgv rejects any V8 flag the
// user gave node, so it cannot be built from process.execArgv.)
let distIndex;

export function initialize(data) {
  distIndex = data.distIndex;
}

export async function resolve(specifier, context, next) {
  if (specifier === "haltpoint") return { url: distIndex, shortCircuit: true };
  return next(specifier, context);
}
