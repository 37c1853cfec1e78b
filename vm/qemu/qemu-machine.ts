import { mkdir } from "node:fs/promises";
import type { Socket } from "node:net";
import { join } from "node:path";
import type { MachineContext } from "../machine.ts";
import type { ResolvedNode } from "../node-options.ts";
import type { QmpEventMessage, WaitOptions } from "../types.ts";
import type { BackdoorAccess } from "../backdoor-access.ts";
import { QemuScreenAndKeys } from "./screen-and-keys.ts";
import { QEMU_IDS } from "./qemu-argv.ts";
import type { RunNetwork } from "./run-network.ts";
import { wantsVhostVsock } from "./vhost-vsock.ts";
import { savedShape, saveRevivedState, unsaveableBecause, type SavedShape } from "./bundle-shape.ts";
import { saveSnapshot } from "./snapshot-format.ts";
import { diskChain, saveDiskWrites, type DiskChain } from "./saved-disk.ts";
import type { QemuRuntime } from "./qemu-runtime.ts";
import { DEFAULT_BOOT_TIMEOUT_S } from "./qemu-boot.ts";
import { QemuLifecycle } from "./qemu-lifecycle.ts";

// Importers that knew them here (other branches, bench/) keep working.
export type { QemuRuntime };
export type { StartSteps } from "./qemu-boot.ts";

/**
 * A real virtual machine: QEMU started with execa, QMP for stop/cont/screendump/quit, the
 * serial console captured into the machine's console log, and commands through the
 * backdoor shell on the guest's /dev/hvc0 (a UNIX socket this worker listens on). Its
 * process's life is QemuLifecycle's (qemu-lifecycle.ts); here is what a test calls.
 */
export class QemuMachine extends QemuLifecycle {
  readonly backend = "qemu" as const;
  private readonly screen = new QemuScreenAndKeys(this.name, () => this.requireQmp(), (m) => this.log(m));

  override async reboot(): Promise<void> {
    await this.autoStart();
    const timeoutMs = (this.options.bootTimeout ?? DEFAULT_BOOT_TIMEOUT_S) * 1000;
    // NixOS presses Ctrl-Alt-Delete; `reboot` does the same on systemd guests and is what
    // haltpoint's busybox init (no Ctrl-Alt-Delete handler) understands.
    if (this.startOptions.allowReboot) {
      this.log("rebooting (the guest resets; QEMU keeps running)");
      const reset = this.requireQmp().waitForEvent("RESET", timeoutMs);
      await this.execute("reboot", { checkOutput: false });
      await reset;
      await this.shellLink.reconnecting;
      return;
    }
    this.log("rebooting (QEMU ends with -no-reboot, then starts again)");
    this.stopping = true;
    await this.execute("reboot", { checkOutput: false });
    await this.waitForExit(timeoutMs, "reboot");
    this.state = "stopped";
    this.coldNextStart = true;
    await this.start(this.startOptions);
  }

  override async waitForShutdown(opts: WaitOptions = {}): Promise<void> {
    if (!this.isUp) return;
    this.log("waiting for the guest to power off");
    await this.waitForExit((opts.timeout ?? 900) * 1000, "waitForShutdown");
    this.state = "stopped";
  }

  override waitForQmpEvent(filter: (e: QmpEventMessage) => boolean, opts: WaitOptions = {}): Promise<QmpEventMessage> {
    const timeout = opts.timeout ?? 600;
    this.log(`waiting for a QMP event`);
    return this.events.next(filter, timeout * 1000).catch((e: Error) => {
      throw this.error(`waitForQmpEvent: ${e.message}`);
    });
  }

  override sendKey(keys: string, opts: { delay?: number } = {}): Promise<void> {
    return this.withCommandChecks(() => this.screen.sendKey(keys, opts.delay));
  }

  override sendChars(text: string, opts: { delay?: number } = {}): Promise<void> {
    return this.withCommandChecks(() => this.screen.sendChars(text, opts.delay));
  }

  /** Type on the serial console (the guest's ttyS0), as NixOS `send_console`. */
  override async sendConsole(text: string): Promise<void> {
    if (!this.serial.connected) throw this.error("sendConsole: the serial console is not connected (is the machine running?)");
    this.log(`sending to the serial console: ${JSON.stringify(text)}`);
    await this.serial.send(text);
  }

  override getScreenText(): Promise<string> {
    return this.withCommandChecks(() => this.screen.screenText(join(this.dir, "ocr-screen")));
  }

  override getScreenTextVariants(): Promise<string[]> {
    return this.withCommandChecks(() => this.screen.screenTextVariants(join(this.dir, "ocr-variants")));
  }

  private async withCommandChecks<T>(fn: () => Promise<T>): Promise<T> {
    await this.autoStart();
    await this.ctx.aroundCommand?.(this.name);
    const r = await fn();
    await this.ctx.aroundCommand?.(this.name);
    return r;
  }

  override async screenshot(name: string): Promise<string> {
    const file = join(this.ctx.outputDir, name.endsWith(".png") ? name : `${name}.png`);
    await mkdir(this.ctx.outputDir, { recursive: true });
    this.log(`taking a screenshot: ${file}`);
    const format = await this.requireQmp().screendump(file, "png");
    if (format !== "png") throw this.error(`screenshot: this QEMU wrote ${format}, not PNG`);
    return file;
  }

  override async sendMonitorCommand(cmd: string): Promise<string> {
    this.log(`monitor: ${cmd}`);
    return this.requireQmp().humanMonitorCommand(cmd);
  }

  override async forwardPort(hostPort: number, guestPort: number): Promise<void> {
    this.log(`forwarding 127.0.0.1:${hostPort} to guest port ${guestPort}`);
    await this.ports.forwardPort(hostPort, guestPort);
  }

  /**
   * Before start: the SSH backdoor's way in. vhost-device-vsock where it is installed and
   * wanted; else QEMU runs in a network namespace of its own, so that the forwards to the
   * guest's ports are on a loopback no other local user can reach (GuestPorts).
   */
  override backdoorAccess(): BackdoorAccess {
    if (this.state !== "created") throw this.error("the ssh backdoor must be set up before start()");
    if (wantsVhostVsock(this.options)) {
      this.vsockUdsPath = join(this.dir, "vsock.sock");
      return { kind: "vsock", socket: () => this.vsock?.udsPath };
    }
    this.ports.usePrivateNetwork();
    return { kind: "ports", open: (port) => this.openGuestPort(port) };
  }

  /** A connection the guest has accepted on its `guestPort` (see GuestPorts.open). */
  openGuestPort(guestPort: number, timeoutMs = 15_000): Promise<Socket> {
    return this.ports.open(guestPort, timeoutMs);
  }

  /** Like NixOS: cut the link to the other machines (the virtual network's NIC). */
  override async block(): Promise<void> {
    this.log("blocking the network link");
    await this.requireQmp().setLink(this.net?.needed ? QEMU_IDS.vnetNic : QEMU_IDS.userNic, false);
  }

  override async unblock(): Promise<void> {
    this.log("unblocking the network link");
    await this.requireQmp().setLink(this.net?.needed ? QEMU_IDS.vnetNic : QEMU_IDS.userNic, true);
  }

  /**
   * Why this machine cannot go into a bundle, or undefined when it can (bundle-shape.ts).
   */
  get unsaveableBecause(): string | undefined {
    return unsaveableBecause({
      startedWith: this.startedWith,
      startScript: Boolean(this.options.startScript),
      revivedWithDisk: Boolean(this.rt.revive?.[this.name]?.disk),
      hasVsock: this.vsockUdsPath !== undefined,
      shape: () => this.savedShape(),
    });
  }

  /** For a bundle: the argv builder's typed parameters (saved-machine.ts) and the kernel and initrd files they name. */
  savedShape(): SavedShape {
    return savedShape(this.startedWith, () => this.net!.vlansOf(this.name));
  }

  /** For a bundle: its disk's chain (saved-disk.ts), or why it cannot be carried; undefined: it has no disk. */
  async savedDisk(): Promise<DiskChain | { unsaveable: string } | undefined> {
    return this.startedWith?.diskImage ? diskChain(this.requireQmp()) : undefined;
  }

  /** Copy the frozen guest's writes since its image into `target` (saved-disk.ts); it stays frozen. */
  async saveDisk(chain: DiskChain, target: string, backingName: string): Promise<void> {
    if (this.state !== "frozen") throw this.error(`cannot save the disk of a machine that is ${this.state} (only a frozen one)`);
    await saveDiskWrites(this.requireQmp(), chain, target, backingName);
  }

  /**
   * Write the frozen guest's RAM and devices to `file` (zstd migration stream). It stays
   * frozen; thaw() resumes it as before.
   */
  async saveState(file: string): Promise<void> {
    if (this.state !== "frozen") throw this.error(`cannot save a machine that is ${this.state} (only a frozen one)`);
    const why = this.unsaveableBecause;
    if (why) throw this.error(`cannot save it: ${why}`);
    const qmp = this.requireQmp();
    if (!this.rt.revive?.[this.name]) return saveSnapshot(qmp, file);
    await saveRevivedState(qmp, this.dir, file, this.rt.reviveRunAs);
  }
}


export function createQemuMachine(node: ResolvedNode, ctx: MachineContext, rt: { qemu?: QemuRuntime; network?: RunNetwork }): QemuMachine {
  if (!rt.qemu) throw new Error(`machine ${node.name}: no guest image was prepared for the qemu backend`);
  return new QemuMachine(node.name, node.options, ctx, rt.qemu, rt.network);
}
