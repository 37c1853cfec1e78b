// Where haltpoint's own files are, from its sources and from its compiled `dist/` alike:
// a module's `import.meta.url` differs between the two, the package self-reference does not.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

export const PACKAGE_ROOT = dirname(createRequire(import.meta.url).resolve("haltpoint/package.json"));

/** A file shipped with haltpoint (not compiled): `packageFile("vm/image/guest-init.sh")`. */
export function packageFile(relative: string): string {
  return join(PACKAGE_ROOT, relative);
}

/** True when this code runs from `dist/` (compiled), false when from the TypeScript sources. */
export const RUNS_COMPILED = !import.meta.url.endsWith(".ts");

/** The `haltpoint` module this code is part of (dist/index.js or index.ts): what a test
 *  file's `import "haltpoint"` must get, since package.json exports only dist/. */
export const HALTPOINT_INDEX = new URL(`./index.${RUNS_COMPILED ? "js" : "ts"}`, import.meta.url).href;
