import { accessSync, constants } from "node:fs";
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { BundleError, damageOf, readManifest, type BundleManifest, type BundleQemuMachine } from "../../hooks/bundles/bundle-format.ts";
import { QEMU_BINARY } from "../../vm/qemu/qemu-argv.ts";
import type { QemuRuntime } from "../../vm/qemu/qemu-runtime.ts";
import type { RevivedMachine } from "../../vm/qemu/saved-machine.ts";
import type { Reporter } from "../report-events.ts";
import { runCommand } from "./run.ts";
import { qemuVersion } from "../../vm/host-facts.ts";
import { REVIVE_RUN_AS } from "../../vm/qemu/unprivileged-qemu.ts";
import { checkSignature } from "../../hooks/bundles/bundle-signature.ts";

export interface ReviveOptions {
  bundle: string;
  debugPort: number;
  /** Seconds until the revived breakpoint is released by itself. */
  freezeTtl: number;
  logDir?: string;
  /** Public keys whose signed bundles revive (the user's own is always trusted). */
  trustKeys?: string[];
  /** Revive a bundle that is unsigned or signed by an untrusted key. */
  allowUnsigned?: boolean;
}

/** The pseudo-test that revives a bundle (worker/revive-test.ts, or its compiled .js in dist/). */
function reviveTestFile(): string {
  const ext = import.meta.url.endsWith(".ts") ? "ts" : "js";
  return fileURLToPath(new URL(`../../worker/revive-test.${ext}`, import.meta.url));
}

/** Where the bundle was saved, by whom, of which test, with what: one line. */
export function originLine(m: BundleManifest): string {
  return `bundle of ${m.test.key} (${m.test.file}), saved ${m.savedAt} on ${m.origin.host} by ${m.origin.user}, haltpoint ${m.haltpoint}, ${m.qemu ?? "no QEMU"}`;
}

/** Why this host cannot revive the bundle (one line), or undefined. */
async function cannotRevive(dir: string, m: BundleManifest): Promise<string | undefined> {
  if (m.machines.length === 0) return "it has no machine to revive";
  const here = m.machines.some((x) => x.backend === "qemu") ? await qemuVersion() : m.qemu;
  if (here !== m.qemu) return `it was saved by ${m.qemu ?? "an unknown QEMU"} and this host has ${here ?? `no ${QEMU_BINARY}`}: QEMU loads only its own version's state`;
  if (m.accel === "kvm") {
    try {
      accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    } catch {
      return "its machines ran under KVM and /dev/kvm is not usable here";
    }
  }
  const qemu = m.machines.filter((x): x is BundleQemuMachine => x.backend === "qemu");
  // The revive run's network gives every qemu machine NICs when it has two or more (RunNetwork).
  const odd = qemu.find((x) => (x.vlans.length > 0) !== qemu.length >= 2);
  if (odd) return `machine ${odd.name} was saved with ${odd.vlans.length} NIC(s) on the run network, and the bundle has ${qemu.length} qemu machine(s): its devices cannot be rebuilt`;
  const damage = await damageOf(dir, m);
  return damage ? `it is damaged: ${damage}` : undefined;
}

/**
 * `haltpoint revive BUNDLE`: check the bundle (format, QEMU version, every file's size and
 * sha256), then run the revive pseudo-test with the debug hook: its machines load their saved
 * state and the run halts at a breakpoint, served like any other, until it is released.
 * 0 once released; 2 for a bundle that cannot be revived (one line saying why).
 */
export async function reviveCommand(o: ReviveOptions, err: { write(s: string): unknown } = process.stderr): Promise<number> {
  const given = resolve(o.bundle);
  let m: BundleManifest;
  let dir: string;
  let signed: string;
  let raw: Buffer;
  try {
    const read = readManifest(given);
    dir = read.dir;
    m = read;
    raw = read.raw;
    signed = checkSignature(dir, read.raw, o);
  } catch (e) {
    err.write(`haltpoint revive: cannot revive ${given}: ${e instanceof BundleError ? e.message : (e as Error).message}\n`);
    return 2;
  }
  const why = await cannotRevive(dir, m);
  if (why) {
    err.write(`haltpoint revive: cannot revive ${given}: ${why}\n`);
    return 2;
  }
  // Where it came from, before anything of it runs (every field was checked to be one line of text).
  err.write(`haltpoint revive: ${originLine(m)}; ${signed}\n`);
  for (const n of m.notSaved ?? []) err.write(`haltpoint revive: machine ${n} was not saved: it is not revived\n`);
  for (const x of m.machines) {
    if (x.backend === "local") err.write(`haltpoint revive: machine ${x.name} (local): a new shell in a sandbox with ${x.files ? "its files as they were" : "an empty directory (it had no files)"}; its processes could not be carried\n`);
  }
  const revive: Record<string, RevivedMachine> = {};
  for (const x of m.machines.filter((y): y is BundleQemuMachine => y.backend === "qemu")) {
    revive[x.name] = {
      params: { memoryMiB: x.memoryMiB, cores: x.cores, vlans: x.vlans, shellPort: x.shellPort, ...(x.append !== undefined ? { append: x.append } : {}), identityDevices: x.identityDevices, allowReboot: x.allowReboot },
      ...(x.kernel ? { kernel: join(dir, x.kernel.path) } : {}),
      ...(x.disk ? { disk: { overlay: join(dir, x.disk.writes.path), base: join(dir, x.disk.image) } } : {}),
      ...(x.initrd ? { initrd: join(dir, x.initrd.path) } : {}),
      state: join(dir, x.state.path),
      // Its RAM, the VGA's 16 MiB and device state: a stream past that is not a migration of this machine.
      maxStreamBytes: (x.memoryMiB + 256) * 2 ** 20,
    };
  }
  // No image build and no KVM probe: the bundle brings its kernels, and its accelerator.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) err.write(`haltpoint revive: running as root: its QEMU runs as uid ${REVIVE_RUN_AS.uid} (nobody), under QEMU's seccomp sandbox\n`);
  const qemuRuntime: QemuRuntime = { kernel: "", initrd: "", accel: m.accel ?? "tcg", snapshotBoot: false, revive, ...(asRoot ? { reviveRunAs: REVIVE_RUN_AS } : {}) };
  let halted = false;
  const reached: Reporter = { report: (e) => void (e.kind === "breakpoint" && (halted = true)) };
  process.env.HALTPOINT_REVIVE_BUNDLE = dir; // read by worker/revive-test.ts (workers inherit it)
  // The worker reads bundle.json again: it must be the bytes checked (and signed) here.
  process.env.HALTPOINT_REVIVE_MANIFEST_SHA256 = createHash("sha256").update(raw).digest("hex");
  const status = await runCommand({
    paths: [reviveTestFile()],
    jobs: 1,
    backend: "qemu",
    repeat: 1,
    untilFail: false,
    quiet: false,
    abortGrace: 10,
    debugHook: true,
    saveBreakpoints: false,
    sshBackdoor: m.sshBackdoor,
    debugPort: o.debugPort,
    freezeTtl: o.freezeTtl,
    maxFrozen: 1,
    logDir: o.logDir,
    qemuRuntime,
    reporters: [reached],
  });
  // The revived test "fails" again by design; once its breakpoint was served and released, that is success.
  return halted && status === 1 ? 0 : status;
}
