import { lstatSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mkdtempLower } from "../../hooks/control/control-paths.ts";

/** `hp-` and mkdtempLower's ten hex digits: only these are ever swept. */
const STATE_DIR_RE = /^hp-[0-9a-f]{10}$/;
/** In each state root: who made it, so a later run can tell whether it is still in use. */
export const OWNER_FILE = "owner.json";

interface Owner {
  pid: number;
  /** The process's start time (/proc/<pid>/stat field 22): a reused pid does not match. */
  start: string;
}

function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function stateBases(): string[] {
  return [...new Set([process.env.HALTPOINT_STATE_DIR, "/var/tmp", tmpdir()].filter((b): b is string => Boolean(b)))];
}

/**
 * Where machines keep their state (sandbox directories, sockets): short, because UNIX
 * socket paths must fit in 107 bytes, and outside /tmp, because each local sandbox gets a
 * private /tmp mounted over the host's. Records its owner (see sweepAbandonedStateRoots).
 */
export function makeStateRoot(): string {
  for (const base of stateBases()) {
    try {
      const dir = mkdtempLower(join(base, "hp-")); // lower case: see mkdtempLower (SSH backdoor socket paths)
      const owner: Owner = { pid: process.pid, start: startTimeOf(process.pid) ?? "" };
      writeFileSync(join(dir, OWNER_FILE), JSON.stringify(owner) + "\n");
      return dir;
    } catch {
      /* not writable: next */
    }
  }
  throw new Error("cannot create a state directory under /var/tmp or the temp directory");
}

/**
 * A SIGKILLed or crashed orchestrator leaves its state root behind. Remove those whose
 * owner process is gone (or whose pid now belongs to another process), and only those:
 * this user's, with an owner file (a dir without one may be being made right now, or not
 * be ours at all). Returns the removed paths.
 */
export function sweepAbandonedStateRoots(): string[] {
  const uid = process.getuid?.();
  const removed: string[] = [];
  for (const base of stateBases()) {
    let names: string[];
    try {
      names = readdirSync(base);
    } catch {
      continue;
    }
    for (const name of names) {
      if (!STATE_DIR_RE.test(name)) continue;
      const dir = join(base, name);
      try {
        const st = lstatSync(dir);
        if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
        const owner = JSON.parse(readFileSync(join(dir, OWNER_FILE), "utf8")) as Owner;
        if (!Number.isSafeInteger(owner.pid) || owner.pid <= 0) continue;
        const start = startTimeOf(owner.pid);
        if (start !== undefined && start === owner.start) continue; // still running
        rmSync(dir, { recursive: true, force: true });
        removed.push(dir);
      } catch {
        /* no owner file, unreadable, or gone meanwhile: leave it */
      }
    }
  }
  return removed;
}
