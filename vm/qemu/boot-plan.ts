import type { NodeOptions } from "../types.ts";
import { guestAppend } from "../image/guest-params.ts";
import { restorePrep } from "../image/guest-restore-prep.ts";
import { QEMU_BINARY, buildQemuArgv, type DiskImage, type QemuArgvOptions } from "./qemu-argv.ts";
import type { QemuRuntime } from "./qemu-runtime.ts";
import { IDENTITY_DEVICES, planSnapshotBoot, snapshotArgs, snapshotEligible, type SnapshotBoot } from "./snapshot-boot.ts";
import { startScriptArgs } from "./start-script.ts";
import { debianImageFor, planDebianBoot } from "./debian-boot.ts";

/** How one start of a qemu machine runs: the program, its arguments, and whether it is a snapshot boot. */
export interface BootPlan {
  file: string;
  args: string[];
  env: Record<string, string>;
  /** A snapshot boot: restoring a saved guest, or a cold boot that saves one. */
  snapshot?: SnapshotBoot;
  /** What haltpoint's argv builder took (not for a start script): what a bundle records. */
  built?: QemuArgvOptions;
}

export interface BootPlanInput {
  options: NodeOptions;
  rt: QemuRuntime;
  /** The sockets, devices and NICs every kind of start has. */
  base: QemuArgvOptions;
  /** "none" for a real boot (reboot()), "save-only" after a snapshot failed to load. */
  snapshots: "any" | "save-only" | "none";
  hasVsock: boolean;
  /** NICs on the run's virtual networks. */
  vnets: number;
  /** The kernel command line that gives this machine its identity at boot (`extra` instead of the node's append). */
  ownAppend(extra?: string): string;
  /** The machine's own state directory. */
  dir: string;
  /** The disk QEMU gets for `diskImage` (a kept overlay with --keep-machine-state). */
  disk(image: string): Promise<string | DiskImage>;
  /** --keep-machine-state: the machine keeps its disk across runs. */
  keepsState?: boolean;
  log(message: string): void;
}

/**
 * Three kinds of start: a NixOS-style start script, a snapshot boot of haltpoint's own image,
 * or a cold boot of the image's (or the node's own) kernel, initrd and disk.
 */
export async function planBoot(p: BootPlanInput): Promise<BootPlan> {
  const o = p.options;
  const base = p.base;
  if (o.startScript) {
    // A NixOS-style run-<name>-vm script brings its own kernel, disk and memory; we add
    // our sockets through QEMU_OPTS, as the NixOS driver does.
    return { file: o.startScript, args: [], env: { QEMU_OPTS: startScriptArgs(base).join(" ") } };
  }
  const debian = debianImageFor(o, p.rt);
  if (debian) return planDebianBoot(p, debian);
  if (p.snapshots !== "none" && snapshotEligible(o, p.rt.snapshotBoot === true, p.hasVsock)) {
    const extraArgs = [...IDENTITY_DEVICES, ...(base.extraArgs ?? [])];
    const snapshot = planSnapshotBoot(
      {
        kernel: p.rt.kernel,
        initrd: p.rt.initrd,
        memoryMiB: base.memoryMiB,
        cores: base.cores,
        accel: base.accel,
        vnets: p.vnets,
        extraArgs,
        append: o.append ?? "",
        allowReboot: base.allowReboot === true,
        ...(p.rt.restoreAsBefore?.streamedRam ? {} : { ramLayout: "mapped" as const }),
        shellPrep: restorePrep(p.rt).key,
      },
      { restore: p.snapshots === "any" },
    );
    if (snapshot?.mode === "save" && snapshot.replaced) p.log(snapshot.replaced);
    // The snapshot's guest booted with the image's generic identity; this machine's own
    // is applied through the shell (personalize), restored or not.
    const append = snapshot ? guestAppend({}, o.append) : p.ownAppend();
    const built: QemuArgvOptions = { ...base, extraArgs, shellPort: "named", kernel: p.rt.kernel, initrd: p.rt.initrd, append };
    const args = buildQemuArgv(built);
    if (snapshot) args.push(...snapshotArgs(snapshot, base.memoryMiB, p.dir));
    return { file: QEMU_BINARY, args, env: {}, snapshot, built };
  }
  const useOwnKernel = !o.diskImage || o.kernel;
  const kernel = o.kernel ?? (useOwnKernel ? p.rt.kernel : undefined);
  const initrd = o.initrd ?? (o.kernel ? undefined : useOwnKernel ? p.rt.initrd : undefined);
  const append = kernel ? p.ownAppend() : undefined;
  // haltpoint's own initramfs reads its shell from the named port; other guests from hvc0.
  const ownImage = initrd === p.rt.initrd;
  const diskImage = o.diskImage ? await p.disk(o.diskImage) : undefined;
  const built: QemuArgvOptions = { ...base, shellPort: ownImage ? "named" : "console", kernel, initrd, append, diskImage };
  return { file: QEMU_BINARY, args: buildQemuArgv(built), env: {}, built };
}
