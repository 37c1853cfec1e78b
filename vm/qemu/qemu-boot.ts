// The steps of one QEMU start that need none of the machine's state (qemu-lifecycle.ts runs
// them in order): loading a revived machine's state, loading a snapshot and checking it
// before the guest runs, saving a freshly booted guest as its shape's snapshot.

import type { BackdoorShell } from "../backdoor-shell.ts";
import { AT_REST_SCRIPT } from "../image/guest-at-rest.ts";
import { RESTORE_PREP_CHECK, RESTORE_PREP_UNDO } from "../image/guest-restore-prep.ts";
import type { NodeOptions } from "../types.ts";
import { feedIncoming } from "./incoming-stream.ts";
import type { QmpClient } from "./qmp.ts";
import type { RevivedMachine } from "./saved-machine.ts";
import { saveForLater, type SnapshotBoot } from "./snapshot-boot.ts";
import { waitRestored } from "./snapshot-format.ts";
import type { SnapshotSlot } from "./snapshot-store.ts";
import { asUnprivileged, type RunAs } from "./unprivileged-qemu.ts";

export const DEFAULT_BOOT_TIMEOUT_S = 300;
/** How much of the console a failed boot's error shows. */
export const CONSOLE_TAIL_LINES = 50;

/**
 * The steps of a start, each as ms from spawning QEMU (bench/vm's restore breakdown): QMP
 * answers, the snapshot is loaded (read, decompressed, loaded), the guest runs, the backdoor
 * shell answers, the guest has its identity. `reseedWait`: how long of the identity step the
 * guest waited for its CRNG's reseed (a duration, 10 ms resolution).
 */
export type StartSteps = Partial<Record<"qmp" | "loaded" | "running" | "shell" | "identity" | "reseedWait", number>>;

/** A snapshot that did not load: the machine falls back to a cold boot. */
export class SnapshotRestoreFailed extends Error {
  constructor(
    readonly slot: SnapshotSlot,
    message: string,
  ) {
    super(message);
  }
}

/** Feed a revived machine's saved state into its QEMU's incoming socket and wait until it is loaded. */
export async function loadRevivedState(qmp: QmpClient, incomingSocket: string, revived: RevivedMachine, o: { runAs: RunAs | undefined; signal: AbortSignal }): Promise<void> {
  const runAs = o.runAs;
  // Loaded and left stopped: the breakpoint's freeze finds it frozen as it was saved.
  const fed = feedIncoming(incomingSocket, revived.state, {
    maxBytes: revived.maxStreamBytes,
    signal: o.signal,
    ...(runAs ? { wrap: (a: string[]) => asUnprivileged(runAs, a) } : {}),
  });
  await Promise.all([fed, waitRestored(qmp, 60_000, { start: false })]);
}

/** Wait for QEMU to load a snapshot; `verified` (the slot's digest check) must pass before the guest runs. */
export async function loadCheckedSnapshot(qmp: QmpClient, verified: Promise<string | undefined> | undefined, onLoaded: () => void): Promise<void> {
  // The digest is checked while QEMU loads, and before the guest runs.
  await waitRestored(qmp, 60_000, {
    beforeStart: async () => {
      onLoaded();
      const bad = await verified;
      if (bad) throw new Error(bad);
    },
  });
}

/** A cold boot that saves its shape's snapshot: save the guest once it is at rest. */
/** `prepScript`: the shell's prep for restores (guest-restore-prep.ts restorePrep), the one its snapshot key names. */
export async function saveWhenAtRest(shell: BackdoorShell, qmp: QmpClient, snapshot: Extract<SnapshotBoot, { mode: "save" }>, options: NodeOptions, prepScript: string, log: (m: string) => void): Promise<void> {
  // A systemd guest is saved once it has booted up and is at rest (guest-at-rest.ts), so
  // that restored machines need not boot and find their services listening.
  const rest = options.image !== undefined ? await shell.run(AT_REST_SCRIPT, (options.bootTimeout ?? DEFAULT_BOOT_TIMEOUT_S) * 1000) : undefined;
  const restLine = rest?.stdout.toString().trim();
  if (rest && rest.status !== 0) {
    snapshot.slot.release();
    log(`snapshot not saved (${restLine || `the at-rest check exited with status ${rest.status}`}); later machines of this shape boot cold`);
  } else {
    if (restLine) log(`guest ${restLine}`);
    if (!(await prepareForRestores(shell, prepScript, log))) {
      snapshot.slot.release();
      return;
    }
    await saveForLater(qmp, snapshot.slot, log, snapshot.disk, snapshot.ram);
    // This guest goes on as a machine of its own: its commands need not inherit the prep's descriptors.
    shell.writeLine(RESTORE_PREP_UNDO);
  }
}

/**
 * What every restore of this snapshot will use (guest-restore-prep.ts), prepared by the shell
 * itself just before the save. Its restores call `__hp_restored` first: without it the shape is
 * not saved (logged; its machines boot cold). Without the descriptors they fall back to the
 * programs (dmesg, date).
 */
async function prepareForRestores(shell: BackdoorShell, script: string, log: (m: string) => void): Promise<boolean> {
  shell.writeLine(script);
  const r = await shell.run(RESTORE_PREP_CHECK, 30_000).catch((e: Error) => ({ status: -1, stdout: Buffer.from(e.message) }));
  const what = r.stdout.toString().trim();
  if (r.status === 0 && what.startsWith("identity")) {
    log(`shell prepared for restores: ${what}`);
    return true;
  }
  log(`snapshot not saved: the shell could not be prepared for restores (${what || `status ${r.status}`}); later machines of this shape boot cold`);
  return false;
}
