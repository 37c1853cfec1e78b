// How a Debian systemd guest (node option `image`) starts: the image's own kernel and initrd,
// its ext4 root on a virtio disk, and the backdoor shell and kill port on virtio-serial ports
// its units serve (vm/image/debian-units.ts).
//
// Snapshot boots apply as for haltpoint's own image, with one difference: the guest has a disk,
// and a restored guest's memory must find the disk as it was when it was saved (its page cache
// and the ext4 journal describe it). So a machine that saves a snapshot writes into a qcow2
// overlay of the image's root file system, the overlay is copied beside the snapshot once the
// migration has completed (QEMU has flushed it then, and the guest is stopped), and every
// restored machine starts from its own copy of that overlay. A cold boot that saves nothing
// writes into QEMU's throw-away overlay (`snapshot=on`): the image itself is never written.

import { copyFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { debianSpecId, type DebianImage } from "../image/debian-image.ts";
import { DEBIAN_ROOT_APPEND } from "../image/debian-units.ts";
import { AT_REST_RULE } from "../image/guest-at-rest.ts";
import { restorePrep } from "../image/guest-restore-prep.ts";
import { guestAppend } from "../image/guest-params.ts";
import { debianSpecOf } from "../node-options.ts";
import type { NodeOptions } from "../types.ts";
import type { BootPlan, BootPlanInput } from "./boot-plan.ts";
import { QEMU_BINARY, buildQemuArgv } from "./qemu-argv.ts";
import { IDENTITY_DEVICES, planSnapshotBoot, snapshotArgs } from "./snapshot-boot.ts";
import type { QemuRuntime } from "./qemu-runtime.ts";

/** The Debian image a node asks for, as the main thread prepared it; throws why there is none. */
export function debianImageFor(o: NodeOptions, rt: QemuRuntime): DebianImage | undefined {
  const packages = debianSpecOf(o);
  if (!packages) return undefined;
  const id = debianSpecId(packages);
  const entry = rt.debian?.[id];
  if (!entry) throw new Error(`no Debian image was prepared for ${id ? `packages ${id}` : "image \"debian\""} (was the machine made outside the test's nodes?)`);
  if ("error" in entry) throw new Error(entry.error);
  return entry;
}

/** The kernel command line beyond haltpoint's `hp.*` parameters: the root disk, then the node's own. */
function extraAppend(o: NodeOptions): string {
  return [DEBIAN_ROOT_APPEND, o.append ?? ""].filter((s) => s.trim() !== "").join(" ");
}

async function makeOverlay(rootfs: string, overlay: string): Promise<void> {
  await rm(overlay, { force: true });
  const r = await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", rootfs, overlay], { reject: false });
  if (r.exitCode !== 0) throw new Error(`cannot make a disk overlay with qemu-img (${r.code === "ENOENT" ? "not installed: apt-get install qemu-utils" : r.stderr.trim()})`);
}

export async function planDebianBoot(p: BootPlanInput, image: DebianImage): Promise<BootPlan> {
  const o = p.options;
  const base = { ...p.base, shellPort: "named" as const, kernel: image.kernel, initrd: image.initrd };
  // --keep-machine-state: the guest's writable overlay of the image, kept across runs; a disk
  // that lives on cannot be paired with a snapshot's memory, so such a machine boots cold.
  const kept = p.keepsState ? await p.disk(image.rootfs) : undefined;
  if (kept !== undefined) {
    const built = { ...base, append: p.ownAppend(extraAppend(o)), diskImage: kept };
    return { file: QEMU_BINARY, args: buildQemuArgv(built), env: {}, built };
  }
  const eligible = p.snapshots !== "none" && p.rt.snapshotBoot === true && o.snapshotBoot !== false && !p.hasVsock;
  if (eligible) {
    const extraArgs = [...IDENTITY_DEVICES, ...(base.extraArgs ?? [])];
    const snapshot = planSnapshotBoot(
      {
        kernel: image.kernel,
        initrd: image.initrd,
        disk: image.rootfs,
        memoryMiB: base.memoryMiB,
        cores: base.cores,
        accel: base.accel,
        vnets: p.vnets,
        extraArgs,
        append: extraAppend(o),
        allowReboot: base.allowReboot === true,
        atRest: AT_REST_RULE,
        ...(p.rt.restoreAsBefore?.streamedRam ? {} : { ramLayout: "mapped" as const }),
        shellPrep: restorePrep(p.rt).key,
      },
      { restore: p.snapshots === "any" },
    );
    if (snapshot?.mode === "save" && snapshot.replaced) p.log(snapshot.replaced);
    if (snapshot) {
      const overlay = join(p.dir, "disk.qcow2");
      if (snapshot.mode === "restore") await copyFile(snapshot.slot.diskFile, overlay);
      else await makeOverlay(image.rootfs, overlay);
      // Booted (or saved) with the generic identity; the machine's own comes through the shell.
      const built = { ...base, extraArgs, append: guestAppend({}, extraAppend(o)), diskImage: { path: overlay, format: "qcow2" as const, snapshot: false } };
      const args = buildQemuArgv(built);
      const boot = { ...snapshot, disk: overlay };
      args.push(...snapshotArgs(boot, base.memoryMiB, p.dir));
      // `built` is what a bundle records (saved-machine.ts): the restore options are not the machine's.
      return { file: QEMU_BINARY, args, env: {}, snapshot: boot, built };
    }
  }
  const built = { ...base, append: p.ownAppend(extraAppend(o)), diskImage: { path: image.rootfs, format: "raw" as const, snapshot: true } };
  return { file: QEMU_BINARY, args: buildQemuArgv(built), env: {}, built };
}
