// What a bundle records of a running QEMU machine (hooks/bundles/bundle-writer.ts asks
// QemuMachine, which answers from here): whether it can be saved at all, the argv builder's
// typed parameters, and its RAM and devices.

import { chownSync } from "node:fs";
import { join } from "node:path";
import { drainOutgoing } from "./incoming-stream.ts";
import type { QemuArgvOptions } from "./qemu-argv.ts";
import type { QmpClient } from "./qmp.ts";
import { savedParams, type SavedQemuParams } from "./saved-machine.ts";
import { migrateTo } from "./snapshot-format.ts";
import type { RunAs } from "./unprivileged-qemu.ts";

/** A machine's bundle shape: the argv builder's typed parameters and the kernel and initrd files they name. */
export type SavedShape = { params: SavedQemuParams; kernel?: string; initrd?: string } | { unsaveable: string };

/** For a bundle: what the argv builder took for the running QEMU (`startedWith`), with the run network's vlans of its NICs. */
export function savedShape(startedWith: QemuArgvOptions | undefined, vlans: () => number[]): SavedShape {
  const w = startedWith;
  if (!w) return { unsaveable: "it is not running" };
  const params = savedParams(w, w.vnet ? vlans() : []);
  if ("unsaveable" in params) return params;
  return { params, ...(w.kernel ? { kernel: w.kernel } : {}), ...(w.initrd ? { initrd: w.initrd } : {}) };
}

export interface SaveableInput {
  startedWith: QemuArgvOptions | undefined;
  startScript: boolean;
  revivedWithDisk: boolean;
  hasVsock: boolean;
  shape: () => SavedShape;
}

/**
 * Why this machine cannot go into a bundle, or undefined when it can: its RAM and devices
 * are saved, so it must hold no state outside QEMU (a disk, a vsock daemon, a start
 * script), and it must have been started from the argv builder's typed options only.
 */
export function unsaveableBecause(m: SaveableInput): string | undefined {
  if (!m.startedWith) return m.startScript ? "it was started by a start script" : "it is not running";
  if (m.revivedWithDisk) return "it was revived with a disk, which a bundle does not carry again yet";
  if (m.hasVsock) return "it has a vhost-device-vsock daemon, whose state is outside QEMU";
  const p = m.shape();
  return "unsaveable" in p ? p.unsaveable : undefined;
}

/** A revived machine's RAM and devices into `file`, through the machine directory's outgoing socket. */
export async function saveRevivedState(qmp: QmpClient, dir: string, file: string, runAs: RunAs | undefined): Promise<void> {
  // A revived QEMU may not run zstd (`-sandbox …,spawn=deny`): haltpoint compresses what it sends.
  await drainOutgoing(join(dir, "outgoing.sock"), file, (uri) => migrateTo(qmp, uri), runAs ? (p) => chownSync(p, runAs.uid, runAs.gid) : undefined);
}
