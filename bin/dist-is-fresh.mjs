// Whether haltpoint's compiled dist/ matches its TypeScript sources. Plain JavaScript: the
// bin decides with it before anything TypeScript can load.
import { existsSync, readdirSync, statSync } from "node:fs";

// What `npm run build` compiles into dist/: tsconfig.build.json's "include", kept in step.
const SOURCE_DIRS = ["common", "orchestrator", "worker", "vm", "hooks"];
const SOURCE_FILES = ["index.ts", "package-root.ts"];

/** True when every source .ts under `root` has a compiled .js in dist/ at least as new, and
 *  when haltpoint is installed as a package (its tarball ships dist/ and no sources). */
export function distIsFresh(root) {
  if (!existsSync(new URL("index.ts", root))) return existsSync(new URL("dist/index.js", root));
  const sources = [...SOURCE_FILES];
  try {
    for (const dir of SOURCE_DIRS) {
      for (const f of readdirSync(new URL(dir, root), { recursive: true })) {
        if (f.endsWith(".ts") && !f.endsWith(".d.ts")) sources.push(`${dir}/${f}`);
      }
    }
    return sources.every((f) => statSync(new URL(`dist/${f.slice(0, -3)}.js`, root)).mtimeMs >= statSync(new URL(f, root)).mtimeMs);
  } catch {
    return false; // no dist/ yet, or a source without its compiled file
  }
}
