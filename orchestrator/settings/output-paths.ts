import { accessSync, chmodSync, constants, mkdirSync, realpathSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { UsageError } from "../selection/discovery.ts";

/** Kernel file systems: files there are not logs, and Node's recursive mkdir loops forever under /proc. */
const PSEUDO_FS = ["/proc", "/sys", "/dev"];

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** The deepest part of `path` that exists, and the parts below it that do not (nearest first). */
function existingAncestor(path: string): { existing: string; missing: string[] } {
  const missing: string[] = [];
  let p = path;
  for (;;) {
    try {
      statSync(p);
      return { existing: p, missing: missing.reverse() };
    } catch (e) {
      if (errno(e) !== "ENOENT" && errno(e) !== "ENOTDIR") throw new UsageError(`${p}: ${errno(e) ?? (e as Error).message}`);
      const up = dirname(p);
      if (up === p) return { existing: p, missing: missing.reverse() };
      missing.push(p);
      p = up;
    }
  }
}

/**
 * Check, before any test starts, that `dir` is (or can be made) a writable directory, and
 * make it one directory at a time (never Node's recursive mkdir: see PSEUDO_FS). Usage
 * error (exit 2) in one line naming the flag and path.
 */
export function ensureWritableDir(dir: string, flag: string, shown = resolve(dir)): string {
  const abs = resolve(dir);
  const { existing, missing } = existingAncestor(abs);
  const real = realpathSync(existing);
  if (PSEUDO_FS.some((p) => real === p || real.startsWith(p + "/"))) throw new UsageError(`${flag} ${shown}: ${real} is a kernel file system, not a place for files`);
  if (!statSync(real).isDirectory()) throw new UsageError(`${flag} ${shown}: ${existing} is not a directory`);
  try {
    accessSync(real, constants.W_OK | constants.X_OK);
  } catch (e) {
    throw new UsageError(`${flag} ${shown}: ${existing} is not writable (${errno(e) ?? (e as Error).message})`);
  }
  for (const p of missing) {
    try {
      mkdirSync(p);
    } catch (e) {
      if (errno(e) !== "EEXIST") throw new UsageError(`${flag} ${shown}: cannot create ${p} (${errno(e) ?? (e as Error).message})`);
    }
  }
  return abs;
}

/** A report file (--json, --junit, --html): its directory must be writable and the path not a directory. */
export function checkReportPath(file: string, flag: string): string {
  const abs = resolve(file);
  let isDir = false;
  try {
    isDir = statSync(abs).isDirectory();
  } catch {
    /* does not exist yet: fine */
  }
  if (isDir) throw new UsageError(`${flag} ${abs}: is a directory`);
  ensureWritableDir(dirname(abs), flag, abs);
  return abs;
}

/**
 * A directory of the run's made 0700: the log dir holds every machine's console (and whatever
 * a test printed there, secrets included) and the pino log of every command; the kept state
 * (-K) holds machines' disks. Only the leaf is made private; everything under it is then out
 * of other users' reach. An unwritable log dir loses the logs, not the run (the reporters
 * skip what they cannot open).
 */
export function makePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  } catch {
    /* see above */
  }
}
