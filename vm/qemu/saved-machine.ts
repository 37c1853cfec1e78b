// A frozen qemu machine as a bundle keeps it (hooks/bundles/bundle-format.ts): not QEMU's command
// line, but the typed parameters haltpoint's own argv builder (qemu-argv.ts) took, so that
// revive builds the command line again with the same code and nothing in a bundle can add a
// QEMU option (a bundle is untrusted input: `-pidfile`, `guestfwd=…cmd:` or `-drive file=`
// from a stranger's manifest would run as the reviving user). Devices, memory and NICs must
// match the saved ones exactly for `-incoming`; paths need not.

import { IDENTITY_DEVICES } from "./snapshot-boot.ts";
import type { QemuArgvOptions } from "./qemu-argv.ts";
import { chmodSync, chownSync, copyFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { handOver, type RunAs } from "./unprivileged-qemu.ts";

/** What a bundle records of a qemu machine's start (besides its files). */
export interface SavedQemuParams {
  memoryMiB: number;
  cores: number;
  /** The run-network vlans its NICs were on (eth1, eth2, …); empty: only the user network. */
  vlans: number[];
  /** Where the guest reads its backdoor shell: haltpoint's image reads the named port. */
  shellPort: "named" | "console";
  /** The kernel command line. */
  append?: string;
  /** The vmgenid and virtio-rng devices of a snapshot-booted machine (snapshot-boot.ts). */
  identityDevices: boolean;
  allowReboot: boolean;
}

/** Bounds a revived machine's parameters are held to (a manifest from elsewhere is not trusted). */
export const SAVED_LIMITS = { maxMemoryMiB: 65_536, maxCores: 64, maxAppendBytes: 4096, maxVlans: 16 } as const;

/** The parameters of a started machine, or why they cannot be recorded (they hold more than the builder's typed options). */
export function savedParams(o: QemuArgvOptions, vlans: number[]): SavedQemuParams | { unsaveable: string } {
  const extra = o.extraArgs ?? [];
  const identity = extra.length >= IDENTITY_DEVICES.length && IDENTITY_DEVICES.every((a, i) => extra[i] === a);
  const rest = identity ? extra.slice(IDENTITY_DEVICES.length) : extra;
  if (rest.length) return { unsaveable: "it has extra QEMU arguments (qemuArgs), which a bundle never carries" };
  // A machine that boots from its disk (no kernel of its own) is revived from the disk the bundle carries.
  if (!o.kernel && !o.diskImage) return { unsaveable: "it has no kernel of its own" };
  return {
    memoryMiB: o.memoryMiB,
    cores: o.cores,
    vlans,
    shellPort: o.shellPort ?? "console",
    ...(o.append !== undefined ? { append: o.append } : {}),
    identityDevices: identity,
    allowReboot: o.allowReboot === true,
  };
}

/** What a revived machine is started from (QemuRuntime.revive); `haltpoint revive` checked every file. */
export interface RevivedMachine {
  params: SavedQemuParams;
  kernel?: string;
  initrd?: string;
  /** Its disk: the writes since its image (a qcow2 overlay), over the image (a qcow2 with no backing). */
  disk?: RevivedDisk;
  /** The machine's saved state (zstd migration stream). */
  state: string;
  /** The most bytes the decompressed stream may have (its RAM and then some): a bomb is cut off. */
  maxStreamBytes: number;
}

export interface RevivedDisk {
  overlay: string;
  base: string;
}

/** QEMU's seccomp sandbox for a revived machine: no exec, no privilege changes, no obsolete syscalls, no resource control. */
export const REVIVE_SANDBOX = ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"] as const;

/** The builder's options for a revived machine: the run's own sockets and NICs (`base`), the rest from the bundle. */
export function revivedArgvOptions(base: QemuArgvOptions, r: Pick<RevivedMachine, "params" | "kernel" | "initrd" | "disk">): QemuArgvOptions {
  const p = r.params;
  return {
    ...base,
    memoryMiB: p.memoryMiB,
    cores: p.cores,
    shellPort: p.shellPort,
    ...(r.kernel ? { kernel: r.kernel } : {}),
    // The bundle's overlay over the bundle's base, both named here (never by the overlay's
    // header), written through QEMU's throw-away overlay: the bundle is never written.
    ...(r.disk ? { diskImage: { path: r.disk.overlay, format: "qcow2" as const, snapshot: true, backing: r.disk.base } } : {}),
    ...(r.initrd ? { initrd: r.initrd } : {}),
    ...(p.append !== undefined ? { append: p.append } : {}),
    extraArgs: p.identityDevices ? [...IDENTITY_DEVICES] : [],
    allowReboot: p.allowReboot,
  };
}

/** Disk images handed over in this process, by bundle file and run directory: copied once, read by every machine on them. */
const handedImages = new Map<string, string>();

/**
 * As root: the machine's files copied into its directory for the unprivileged uid QEMU runs
 * as (unprivileged-qemu.ts); a disk image (a few hundred MiB) once into the run's directory,
 * shared read-only by the machines on it.
 */
export function handOverRevived(runAs: RunAs, dir: string, r: RevivedMachine, sockets: string[]): RevivedMachine {
  const files = [r.kernel, r.initrd, r.disk?.overlay];
  const copies = handOver(runAs, dir, files.filter((f): f is string => f !== undefined), sockets);
  const [kernel, initrd, overlay] = files.map((f) => (f === undefined ? undefined : copies.shift()));
  let base: string | undefined;
  if (r.disk) {
    const key = `${r.disk.base}\0${dirname(dir)}`;
    base = handedImages.get(key);
    if (!base) {
      base = join(dirname(dir), `image-${basename(r.disk.base)}`);
      copyFileSync(r.disk.base, base);
      chmodSync(base, 0o400);
      chownSync(base, runAs.uid, runAs.gid);
      handedImages.set(key, base);
    }
  }
  return { ...r, ...(kernel ? { kernel } : {}), ...(initrd ? { initrd } : {}), ...(overlay && base ? { disk: { overlay, base } } : {}) };
}
