// A revived QEMU loads a stranger's migration stream (hooks/bundles/bundle-format.ts: a bundle is
// untrusted input), so when `haltpoint revive` runs as root it does not run as root: it is
// started under setpriv as an unprivileged uid, and only its own directory (the bundle's
// kernel and initrd copied into it, its sockets) and the run-network hubs it connects to are
// handed to that uid. setpriv rather than QEMU's own `-runas`: the seccomp sandbox's
// `elevateprivileges=deny` forbids the setuid() that `-runas` needs (QEMU 7.2 dies with
// SIGSYS), and this way QEMU never runs as root at all, not even while it parses options.

import { chmodSync, chownSync, copyFileSync, lstatSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** The uid and gid a revived QEMU runs as when revive runs as root. */
export interface RunAs {
  uid: number;
  gid: number;
}

/**
 * Debian's `nobody` and `nogroup` (65534): no files of its own, no login. Processes of other
 * daemons running as nobody could reach the revived machine's directory; that is the
 * documented trade-off (docs/security.md) against needing a user made for haltpoint.
 */
export const REVIVE_RUN_AS: RunAs = { uid: 65534, gid: 65534 };

/** `argv` run as `r`, with no groups, no capabilities and no way to gain privileges back. */
export function asUnprivileged(r: RunAs, argv: string[]): string[] {
  return ["setpriv", `--reuid=${r.uid}`, `--regid=${r.gid}`, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--pdeathsig", "KILL", "--", ...argv];
}

/**
 * Make `machineDir` the uid's own (0700), with copies of `files` in it (returned, in order),
 * and `sockets` (listened on by haltpoint: shell, serial, vnet hubs) connectable by it. The
 * directories above it, up to the run's state root (`hp-…`), get search permission only
 * (0711): the uid can walk through them to what it was given, and list nothing.
 */
export function handOver(r: RunAs, machineDir: string, files: string[], sockets: string[]): string[] {
  const copies = files.map((f, i) => {
    const to = join(machineDir, `${i}-${basename(f)}`);
    copyFileSync(f, to);
    chmodSync(to, 0o400);
    chownSync(to, r.uid, r.gid);
    return to;
  });
  for (const s of sockets) chownSync(s, r.uid, r.gid);
  chownSync(machineDir, r.uid, r.gid);
  chmodSync(machineDir, 0o700);
  for (let d = dirname(machineDir), i = 0; i < 3; d = dirname(d), i++) {
    if (lstatSync(d).uid !== process.getuid?.()) break;
    chmodSync(d, 0o711);
    if (/^hp-/.test(basename(d))) break;
  }
  return copies;
}
