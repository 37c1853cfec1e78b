import { readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { TEST_FILE_RE } from "../../common/test-files.ts";

export class UsageError extends Error {
  override name = "UsageError";
}

/** Find the VM test files under the given files and directories, sorted, no duplicates. */
export async function discoverTestFiles(paths: string[]): Promise<string[]> {
  const found = new Set<string>();
  for (const p of paths) {
    const abs = resolve(p);
    let st;
    try {
      st = await stat(abs);
    } catch {
      throw new UsageError(`no such file or directory: ${p}`);
    }
    if (st.isDirectory()) for (const f of await walk(abs)) found.add(f);
    else if (/\.(ts|mts|js|mjs)$/.test(abs)) found.add(abs);
    else throw new UsageError(`${p}: not a test file (expected *.vmtest.ts, .mts, .cts, .js, .mjs or .cjs)`);
  }
  return [...found].sort();
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith(".") || e.name === "node_modules") continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (TEST_FILE_RE.test(e.name)) out.push(p);
  }
  return out;
}
