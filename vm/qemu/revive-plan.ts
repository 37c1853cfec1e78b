import { join } from "node:path";
import type { BootPlan } from "./boot-plan.ts";
import { incomingArgs } from "./incoming-stream.ts";
import { QEMU_BINARY, buildQemuArgv, type QemuArgvOptions } from "./qemu-argv.ts";
import { REVIVE_SANDBOX, handOverRevived, revivedArgvOptions, type RevivedMachine } from "./saved-machine.ts";
import type { RunAs } from "./unprivileged-qemu.ts";

export interface RevivePlanInput {
  /** The machine as the bundle saved it. */
  revived: RevivedMachine;
  /** This run's own sockets, devices and NICs. */
  base: QemuArgvOptions;
  /** The run network hubs of this run's NICs (undefined: no hub for that one). */
  hubs: Array<string | undefined>;
  /** The machine's own state directory. */
  dir: string;
  /** As root: the unprivileged uid QEMU will run as. */
  runAs: RunAs | undefined;
}

/**
 * `haltpoint revive`: the argv built again by the same builder from the bundle's typed
 * parameters and this run's own sockets and NICs (`base`), under QEMU's seccomp sandbox,
 * listening for its state on a socket (incoming-stream.ts). As root, the machine's
 * directory, a copy of its kernel and initrd and its sockets are handed to the
 * unprivileged uid QEMU will run as.
 */
export function revivePlan({ revived: r, base, hubs, dir, runAs }: RevivePlanInput): BootPlan {
  const want = r.params.vlans.length;
  const have = hubs.filter((h) => h !== undefined).length;
  if (want !== have) throw new Error(`it was saved with ${want} NIC(s) on the run network and this run has ${have} for it`);
  const sockets = [join(dir, "shell.sock"), join(dir, "serial.sock"), ...hubs.filter((h): h is string => h !== undefined)];
  const built = revivedArgvOptions(base, runAs ? handOverRevived(runAs, dir, r, sockets) : r);
  return { file: QEMU_BINARY, args: [...buildQemuArgv(built), ...REVIVE_SANDBOX, ...incomingArgs(join(dir, "incoming.sock"))], env: {}, built };
}
