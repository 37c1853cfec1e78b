import { createHash } from "node:crypto";

/** What naming needs of a planned test: its name, and the directory name given to it. */
export interface NamedTest {
  name: string;
  dirName?: string;
}

/** Room for `#<run>/try<N>/<machine>.console.log` under NAME_MAX (255) with a wide margin. */
export const MAX_DIR_NAME = 100;

/**
 * A test's name is free text ("../../x", "/etc/evil", 300 characters); its runs' log
 * directories must stay one level under --log-dir and be unique. The slug keeps the
 * readable part; a short hash of the real name is added whenever the slug is not the name
 * itself (so `x`, `./x` and `foo/../x` stay apart) or would be taken. The real name stays
 * in the logs and reports.
 */
export function dirNameFor(name: string, taken: ReadonlySet<string> = new Set()): string {
  let slug = name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^[.-]+/, "");
  if (slug === name && slug.length <= MAX_DIR_NAME && slug && !taken.has(slug.toLowerCase())) return slug;
  const hash = createHash("sha256").update(name).digest("hex");
  slug = slug.slice(0, MAX_DIR_NAME - 9) || "test";
  for (let n = 8; n <= hash.length; n++) {
    const candidate = `${slug}-${hash.slice(0, n)}`;
    if (!taken.has(candidate.toLowerCase())) return candidate;
  }
  throw new Error(`no unique directory name for test '${name}'`);
}

/** Give every test its directory name (compared case-insensitively, for case-folding file systems). */
export function assignDirNames(tests: NamedTest[]): void {
  const taken = new Set<string>();
  // Names that need no change first, each group by name: the same suite always gets the
  // same directories, whatever order its files were found in.
  const byName = (a: NamedTest, b: NamedTest): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const plain = tests.filter((t) => dirNameFor(t.name) === t.name).sort(byName);
  for (const t of [...plain, ...tests.filter((t) => !plain.includes(t)).sort(byName)]) {
    t.dirName = dirNameFor(t.name, taken);
    taken.add(t.dirName.toLowerCase());
  }
}

/** `<dir name>#<run>`: a run's directory under --log-dir. */
export function runDirName(run: { test: NamedTest; index: number; key: string }): string {
  return run.test.dirName ? `${run.test.dirName}#${run.index}` : run.key;
}
