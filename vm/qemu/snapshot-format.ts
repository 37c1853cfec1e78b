// The snapshot format: a stopped guest's whole state (RAM and devices) as QEMU's migration
// stream, compressed with zstd -1 (0.8 s and 43 MiB for haltpoint's 256 MiB guest, against
// 105 MiB uncompressed). Saving is QMP `migrate` to `exec:zstd`; restoring is a new QEMU with
// the same argv plus `-incoming exec:zstd -dc`. Chardev paths need not match, so a restored
// guest reconnects to the new machine's sockets.

import { ignoreSharedRam } from "./mapped-ram.ts";
import type { QmpClient } from "./qmp.ts";

/** Bumped when what a snapshot holds or how it is applied changes: older ones are not used.
 *  (Mapped-RAM snapshots, mapped-ram.ts, differ in their shape's `ramLayout`.) */
export const SNAPSHOT_FORMAT_VERSION = 2;

/** A path as one word for /bin/sh, which QEMU runs `exec:` commands with. */
function shellWord(path: string): string {
  return `'${path.replace(/'/g, `'\\''`)}'`;
}

/** The migration URI that reads the stream saved in `file`. */
export function restoreUri(file: string): string {
  return `exec:zstd -dc ${shellWord(file)}`;
}

/** The arguments that make a new QEMU load `file` instead of booting. */
export function restoreArgs(file: string): string[] {
  return ["-incoming", restoreUri(file)];
}

interface MigrateInfo {
  status?: string;
  "error-desc"?: string;
}

async function pollMigration(qmp: QmpClient, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    const info = (await qmp.execute("query-migrate")) as MigrateInfo;
    if (info.status === "completed") return;
    if (info.status === "failed" || info.status === "cancelled") throw new Error(`migration ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`);
    if (Date.now() > end) throw new Error(`migration not completed within ${timeoutMs / 1000} s (status ${info.status ?? "none"})`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

/**
 * Write the stopped guest's state to `file` (through zstd). The guest must be stopped;
 * it stays stopped (status `postmigrate`) until the caller sends `cont`. `mappedRam`: leave
 * out the RAM, which is in its shared file (mapped-ram.ts); otherwise the stream has all of
 * it, also when this QEMU once loaded or saved a mapped-RAM snapshot (a bundle needs its RAM).
 */
export async function saveSnapshot(qmp: QmpClient, file: string, o: { timeoutMs?: number; mappedRam?: boolean } = {}): Promise<void> {
  await migrateTo(qmp, `exec:zstd -q -1 > ${shellWord(file)}`, o);
}

/** Migrate the stopped guest to `uri` (a QEMU migration URI), until it is completed. */
export async function migrateTo(qmp: QmpClient, uri: string, o: { timeoutMs?: number; mappedRam?: boolean } = {}): Promise<void> {
  await ignoreSharedRam(qmp, o.mappedRam === true);
  await qmp.execute("migrate", { uri });
  await pollMigration(qmp, o.timeoutMs ?? 120_000);
}

/**
 * Wait until a QEMU started with `restoreArgs` has loaded its snapshot, then start the guest
 * (it was saved stopped) unless `o.start` is false (a revived breakpoint stays frozen).
 * `o.beforeStart` runs once it is loaded, before the guest runs (it may throw: the guest
 * then never runs). Rejects when the load fails; QEMU then exits by itself.
 */
export async function waitRestored(qmp: QmpClient, timeoutMs: number, o: { start?: boolean; beforeStart?: () => Promise<void> } = {}): Promise<void> {
  const end = Date.now() + timeoutMs;
  let checked = false;
  // Polled every few ms: each poll is two QMP round trips (well under a ms), a coarser one
  // left the loaded guest waiting up to 50 ms for its cont.
  for (let delay = 2; ; delay = Math.min(delay * 2, 8)) {
    const status = ((await qmp.execute("query-status")) as { status?: string }).status;
    if (status === "running") return;
    const migration = ((await qmp.execute("query-migrate")) as MigrateInfo).status;
    if (migration === "failed") throw new Error("QEMU could not load it");
    // The guest was stopped when it was saved, and QEMU keeps a loaded guest in the run
    // state it was saved in: start it.
    if (status === "paused") {
      if (!checked) await o.beforeStart?.();
      checked = true;
      if (o.start === false) return;
      await qmp.cont();
      continue;
    }
    if (status !== "inmigrate" && status !== "prelaunch" && status !== "restore-vm") throw new Error(`after loading the snapshot the guest is ${status}`);
    if (Date.now() > end) throw new Error(`the snapshot did not load within ${timeoutMs / 1000} s (status ${status})`);
    await new Promise((r) => setTimeout(r, delay));
  }
}
