// Snapshot boots: which machines start from a snapshot, and saving one for the machines that
// come after. The first machine of a shape boots cold with the image's generic identity,
// saves the snapshot once its backdoor shell is up, and then, like every machine restored
// from it later, takes its own identity through the shell (guest-personalize.ts).

import { copyFile, rm, stat } from "node:fs/promises";
import type { NodeOptions } from "../types.ts";
import { ramFileArgs, SaverRam, startMappedIncoming } from "./mapped-ram.ts";
import type { QmpClient } from "./qmp.ts";
import { restoreArgs, restoreUri, saveSnapshot } from "./snapshot-format.ts";
import { SnapshotSlot, type SnapshotShape } from "./snapshot-store.ts";

/**
 * `disk`: the machine's disk overlay, saved with the snapshot (Debian guests, vm/qemu/debian-boot.ts).
 * `ram`: the saving machine's shared RAM file (mapped-RAM shapes, mapped-ram.ts).
 */
export type SnapshotBoot = { mode: "restore"; slot: SnapshotSlot; disk?: string } | { mode: "save"; slot: SnapshotSlot; replaced?: string; disk?: string; ram?: SaverRam };

/**
 * The QEMU arguments a snapshot boot adds: the RAM file (shared for the saver, mapped
 * copy-on-write for a restore) and, for a restore, where its state comes from. A mapped-RAM
 * restore gets its stream over QMP (startRestore), after its capabilities are set.
 */
export function snapshotArgs(snapshot: SnapshotBoot, memoryMiB: number, machineDir: string): string[] {
  if (!snapshot.slot.mappedRam) return snapshot.mode === "restore" ? restoreArgs(snapshot.slot.file) : [];
  if (snapshot.mode === "restore") return [...ramFileArgs(snapshot.slot.ramFile, memoryMiB, false), "-incoming", "defer"];
  const ram = SaverRam.create(memoryMiB, machineDir);
  snapshot.ram = ram;
  snapshot.slot.whenReleased(() => ram.close());
  return ram.args(memoryMiB);
}

/** Once QMP answers: a mapped-RAM restore starts loading its state; a saver's RAM file loses its name (QEMU has it mapped). */
export async function snapshotQmpReady(qmp: QmpClient, snapshot: SnapshotBoot): Promise<void> {
  if (snapshot.mode === "save") snapshot.ram?.unlink();
  else if (snapshot.slot.mappedRam) await startMappedIncoming(qmp, restoreUri(snapshot.slot.file));
}

/**
 * Devices that make a restored guest its own: a new VM generation id on every QEMU start
 * (the kernel reseeds its CRNG when it changes, but only once the CRNG is ready, which under
 * TCG needs the host entropy of virtio-rng).
 */
export const IDENTITY_DEVICES = ["-device", "vmgenid,guid=auto", "-device", "virtio-rng-pci"] as const;

/** Whether a machine can start from a snapshot at all: haltpoint's own kernel and initrd, no disk, no vsock daemon. */
export function snapshotEligible(o: NodeOptions, runAllows: boolean, hasVsock: boolean): boolean {
  return runAllows && o.snapshotBoot !== false && !o.startScript && !o.diskImage && !o.kernel && !o.initrd && !hasVsock;
}

/** Restore when the snapshot is there; else save it if no other live machine is saving it; else undefined (plain cold boot). */
export function planSnapshotBoot(shape: SnapshotShape, o: { restore: boolean }): SnapshotBoot | undefined {
  const slot = SnapshotSlot.forShape(shape);
  const found = slot.check();
  if (found === "ok" && o.restore) return { mode: "restore", slot };
  if (found !== "ok" && found !== "absent") {
    slot.discard();
    const replaced = `snapshot ${slot.file} is damaged (${found.damaged}): removed it, booting cold`;
    return slot.claim() ? { mode: "save", slot, replaced } : undefined;
  }
  if (found === "absent" && slot.claim()) return { mode: "save", slot };
  return undefined;
}

/**
 * Save the running guest into the slot (stop, migrate, cont) and release it. Never throws:
 * a snapshot that cannot be saved only means later machines boot cold too.
 */
export async function saveForLater(qmp: QmpClient, slot: SnapshotSlot, log: (m: string) => void, disk?: string, ram?: SaverRam): Promise<void> {
  const t0 = performance.now();
  try {
    await qmp.stop();
    try {
      await saveSnapshot(qmp, slot.partialFile, { mappedRam: ram !== undefined });
      // The guest is still stopped: its RAM file holds the memory the state stream goes with.
      const ramSha256 = ram ? await ram.copyTo(slot.partialRamFile) : undefined;
      // The migration has flushed the disk, and the guest is still stopped: the disk as its memory knows it.
      if (disk) await copyFile(disk, slot.partialDiskFile);
      await slot.commit(ramSha256);
    } finally {
      await qmp.cont();
    }
    const bytes = (await stat(slot.file)).size;
    const ramBytes = ram ? (await stat(slot.ramFile)).blocks * 512 : 0;
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
    log(`snapshot saved for later machines of this shape: ${slot.file} (${mib(bytes)}${ram ? ` + RAM ${mib(ramBytes)} on disk` : ""}, ${((performance.now() - t0) / 1000).toFixed(2)} s)`);
  } catch (e) {
    await rm(slot.partialFile, { force: true });
    await rm(slot.partialDiskFile, { force: true });
    await rm(slot.partialRamFile, { force: true });
    log(`could not save a snapshot (${(e as Error).message}); later machines boot cold`);
  } finally {
    slot.release();
  }
}
