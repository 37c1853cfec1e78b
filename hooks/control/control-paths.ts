import { randomBytes } from "node:crypto";
import { lstatSync, mkdirSync } from "node:fs";
import { join } from "node:path";

// Where orchestrators put their control sockets, so that `haltpoint ls` finds every running
// orchestrator of this user on this host (one socket each, named by pid).
//
// A control socket releases breakpoints and hands out console ports, so only its user may
// reach it. Permissions on a UNIX socket file are not honoured everywhere; the directory's
// are. Hence a private directory, checked rather than trusted: under /tmp anyone could have
// created `/tmp/haltpoint-<uid>` first (or a symlink of that name) to catch our sockets.

/** The per-user control socket directory, created 0700 and verified. Throws if unsafe. */
export function controlDir(): string {
  const uid = process.getuid?.() ?? 0;
  const base = usableRuntimeDir(process.env.XDG_RUNTIME_DIR, uid);
  const dir = base ? join(base, "haltpoint") : join("/tmp", `haltpoint-${uid}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
      throw new Error(`cannot create control socket directory ${dir}: ${(e as Error).message}`);
    }
  }
  // lstat: a symlink is refused rather than followed.
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`refusing control socket directory ${dir}: not a directory (remove it)`);
  if (st.uid !== uid) throw new Error(`refusing control socket directory ${dir}: owned by uid ${st.uid}, not by you (uid ${uid})`);
  if (st.mode & 0o077) {
    const mode = (st.mode & 0o777).toString(8).padStart(3, "0");
    throw new Error(`refusing control socket directory ${dir}: mode ${mode} lets others in (chmod 700 ${dir})`);
  }
  return dir;
}

/**
 * $XDG_RUNTIME_DIR when it is a directory of this user; else undefined. `su`, `sudo -u` and
 * `setpriv` pass the first user's value on (/run/user/0 to uid 65534), and a dir that does
 * not exist or is not ours must not stop the run: /tmp/haltpoint-<uid> serves instead, and
 * `haltpoint ls` in the same environment makes the same choice.
 */
function usableRuntimeDir(base: string | undefined, uid: number): string | undefined {
  if (!base) return undefined;
  try {
    const st = lstatSync(base);
    return st.isDirectory() && st.uid === uid ? base : undefined;
  } catch {
    return undefined;
  }
}

/** The control socket of the orchestrator with process id `pid`. */
export function controlSocketPath(pid = process.pid): string {
  return join(controlDir(), `${pid}.sock`);
}

/**
 * Like mkdtempSync (a new 0700 directory `<prefix><random>`), but the random part is lower
 * case: a socket under it must survive OpenSSH lowercasing `%h`, which is how
 * `ssh vsock-mux/<path>` hands the path to systemd-ssh-proxy.
 */
export function mkdtempLower(prefix: string): string {
  for (let i = 0; ; i++) {
    const dir = `${prefix}${randomBytes(5).toString("hex")}`;
    try {
      mkdirSync(dir, { mode: 0o700 });
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || i > 20) throw e;
    }
  }
}
