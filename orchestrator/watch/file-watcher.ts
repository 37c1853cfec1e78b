// The directories `haltpoint run --watch` listens to: each directory holding a file some test
// loads, and every directory under the run's paths (a new test file appears in one). One
// non-recursive `fs.watch` (inotify) per directory, not one per file: editors save by writing
// a new file and renaming it over the old one, which ends a watch on the file itself.
// (Node 20's recursive fs.watch works on Linux — checked on 20.20.2: files in a new
// subdirectory are reported — but it watches every directory under its root with no way to
// leave out node_modules or .haltpoint, and a helper a test imports may lie outside the run's
// paths: one watch per known directory covers both, with nothing unneeded.)
import { type FSWatcher, watch } from "node:fs";
import { readdir } from "node:fs/promises";
import { join, resolve } from "node:path";

export class DirectoryWatcher {
  private readonly watchers = new Map<string, FSWatcher>();

  constructor(
    private readonly onPath: (path: string) => void,
    private readonly onError: (dir: string, message: string) => void,
  ) {}

  /** Watch exactly these directories (new ones are added, ones no longer wanted closed). */
  set(dirs: Iterable<string>): void {
    const want = new Set([...dirs].map((d) => resolve(d)));
    for (const [d, w] of this.watchers) {
      if (!want.has(d)) {
        w.close();
        this.watchers.delete(d);
      }
    }
    for (const d of want) {
      if (this.watchers.has(d)) continue;
      try {
        const w = watch(d, { persistent: true }, (_event, name) => {
          if (name) this.onPath(join(d, name.toString()));
        });
        w.on("error", (e) => {
          // A directory removed under the watcher: forget it (the next set() may add it back).
          this.onError(d, e.message);
          w.close();
          this.watchers.delete(d);
        });
        this.watchers.set(d, w);
      } catch (e) {
        this.onError(d, (e as Error).message);
      }
    }
  }

  get dirs(): string[] {
    return [...this.watchers.keys()].sort();
  }

  close(): void {
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}

/** Every directory at or under `roots` (files count by their directory), skipping dot directories and node_modules as discovery does. */
export async function directoriesUnder(roots: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    out.push(dir);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory() && !e.name.startsWith(".") && e.name !== "node_modules") await walk(join(dir, e.name));
  };
  for (const r of roots) {
    const abs = resolve(r);
    const isDir = await readdir(abs).then(
      () => true,
      () => false,
    );
    await walk(isDir ? abs : resolve(abs, ".."));
  }
  return out;
}
