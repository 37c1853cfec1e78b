// A frozen qemu machine as a bundle keeps it (hooks/bundles/bundle-format.ts): the argv QEMU was
// started with, its run's paths replaced by placeholders, so that a QEMU on another host,
// in another state dir, with the kernel and initrd from the bundle, can load its state.
// Devices, memory and NICs must match exactly for `-incoming`; paths need not.

/** Placeholders in a saved argv. */
const STATE = "{{state}}";
const KERNEL = "{{kernel}}";
const INITRD = "{{initrd}}";

/** What a revived machine is started from (QemuRuntime.revive). */
export interface RevivedMachine {
  /** The saved argv, with placeholders. */
  argv: string[];
  kernel?: string;
  initrd?: string;
  /** The machine's saved state (zstd migration stream); `haltpoint revive` checked its sha256. */
  state: string;
}

/**
 * The argv of a running machine with `stateRoot` (the run's state dir, which holds every
 * socket and the run network's hubs), the kernel and the initrd replaced by placeholders,
 * and without the `-incoming` of a snapshot-booted machine.
 */
export function argvTemplate(argv: readonly string[], paths: { stateRoot: string; kernel?: string; initrd?: string }): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "-incoming") {
      i++;
      continue;
    }
    let a = argv[i]!;
    if (paths.kernel && a === paths.kernel) a = KERNEL;
    else if (paths.initrd && a === paths.initrd) a = INITRD;
    else a = a.split(paths.stateRoot + "/").join(STATE + "/");
    out.push(a);
  }
  return out;
}

/** A saved argv made concrete for a new state dir and the bundle's kernel and initrd. */
export function argvFromTemplate(template: readonly string[], paths: { stateRoot: string; kernel?: string; initrd?: string }): string[] {
  return template.map((a) => {
    if (a === KERNEL) return need(paths.kernel, "kernel");
    if (a === INITRD) return need(paths.initrd, "initrd");
    return a.split(STATE + "/").join(paths.stateRoot + "/");
  });
}

function need(v: string | undefined, what: string): string {
  if (!v) throw new Error(`the saved machine needs its ${what}, and the bundle has none`);
  return v;
}
