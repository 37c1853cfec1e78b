import { controlArgs, type QemuArgvOptions } from "./qemu-argv.ts";

/**
 * QEMU_OPTS for a NixOS-style `run-<name>-vm` start script. The script brings its own
 * kernel, initrd, disk, memory and network and appends "$QEMU_OPTS" to its QEMU command
 * line (word-split by its shell, so the socket paths must hold no spaces — ours never do);
 * we add only how haltpoint reaches the machine, plus the node's extra arguments.
 */
export function startScriptArgs(o: QemuArgvOptions): string[] {
  const args = [...controlArgs(o), ...(o.extraArgs ?? [])];
  const spaced = args.find((a) => /\s/.test(a));
  if (spaced) throw new Error(`cannot pass ${JSON.stringify(spaced)} through QEMU_OPTS: it contains whitespace`);
  return args;
}
