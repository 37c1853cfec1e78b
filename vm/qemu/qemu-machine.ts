import type { ResultPromise } from "execa";
import { mkdirSync } from "node:fs";
import { keptDiskImage } from "./kept-disk.ts";
import { mkdir } from "node:fs/promises";
import type { Socket } from "node:net";
import { join } from "node:path";
import { BackdoorShell, ShellClosedError } from "../backdoor-shell.ts";
import type { MachineContext } from "../machine.ts";
import { GuestMachine } from "../guest-machine.ts";
import { DEFAULT_MEMORY_MIB, type ResolvedNode } from "../node-options.ts";
import type { NodeOptions, QmpEventMessage, WaitOptions } from "../types.ts";
import { ConnectionLostError } from "../errors.ts";
import { QemuScreenAndKeys } from "./screen-and-keys.ts";
import { QmpEventLog } from "./qmp-event-log.ts";
import { guestAppend } from "../image/guest-params.ts";
import { QEMU_IDS, type DiskImage, type QemuArgvOptions } from "./qemu-argv.ts";
import { QmpClient } from "./qmp.ts";
import { ShellListener } from "./shell-listener.ts";
import { vlanNics, vlanSetupCommand, type RunNetwork } from "./run-network.ts";
import { VhostVsockDaemon, vhostVsockArgs, wantsVhostVsock } from "./vhost-vsock.ts";
import type { BackdoorAccess } from "../backdoor-access.ts";
import { GuestPorts } from "./guest-ports.ts";
import { inOwnNetNamespace } from "./net-namespace.ts";
import { GuestKillPort, RUNNING_FILE } from "./kill-port.ts";
import { spawnMachineProcess } from "../machine-process.ts";
import { personalizeCommand, reseedWaitMs } from "../image/guest-personalize.ts";
import { saveForLater } from "./snapshot-boot.ts";
import { planBoot } from "./boot-plan.ts";
import { revivePlan } from "./revive-plan.ts";
import { savedShape, saveRevivedState, unsaveableBecause, type SavedShape } from "./bundle-shape.ts";
import { SerialConsole } from "./serial-console.ts";
import { saveSnapshot, waitRestored } from "./snapshot-format.ts";
import { diskChain, saveDiskWrites, type DiskChain } from "./saved-disk.ts";
import { feedIncoming } from "./incoming-stream.ts";
import { asUnprivileged } from "./unprivileged-qemu.ts";
import type { QemuRuntime } from "./qemu-runtime.ts";
import type { SnapshotSlot } from "./snapshot-store.ts";
import { bestEffort } from "../../common/teardown.ts";
import { AT_REST_SCRIPT } from "../image/guest-at-rest.ts";

/** A snapshot that did not load: the machine falls back to a cold boot. */
class SnapshotRestoreFailed extends Error {
  constructor(
    readonly slot: SnapshotSlot,
    message: string,
  ) {
    super(message);
  }
}

// Importers that knew it here (other branches) keep working.
export type { QemuRuntime };

const DEFAULT_BOOT_TIMEOUT_S = 300;

/**
 * The steps of a start, each as ms from spawning QEMU (bench/vm's restore breakdown): QMP
 * answers, the snapshot is loaded (read, decompressed, loaded), the guest runs, the backdoor
 * shell answers, the guest has its identity. `reseedWait`: how long of the identity step the
 * guest waited for its CRNG's reseed (a duration, 10 ms resolution).
 */
export type StartSteps = Partial<Record<"qmp" | "loaded" | "running" | "shell" | "identity" | "reseedWait", number>>;
const SHUTDOWN_TIMEOUT_MS = 60_000;
const CONSOLE_TAIL_LINES = 50;

/**
 * A real virtual machine: QEMU started with execa, QMP for stop/cont/screendump/quit, the
 * serial console captured into the machine's console log, and commands through the
 * backdoor shell on the guest's /dev/hvc0 (a UNIX socket this worker listens on).
 */
export class QemuMachine extends GuestMachine {
  readonly backend = "qemu" as const;
  private proc: ResultPromise | undefined;
  private qmp: QmpClient | undefined;
  protected readonly processName = "qemu";
  private shellListener: ShellListener | undefined;
  private killPort: GuestKillPort | undefined;
  private stopping = false;
  /** A kept disk (--keep-machine-state): QEMU must flush it before it is killed. */
  private keepsDisk = false;
  private qemuGone = new AbortController();
  /** Set while a rebooted guest's backdoor shell is awaited (start({allowReboot})). */
  private reconnecting: Promise<void> | undefined;
  /** Snapshot boots: the guest booted with the image's generic identity and got its own through the shell. */
  private identityByShell = false;
  private coldNextStart = false;
  /** What the argv builder took for the running QEMU (not for a start script): what a bundle records. */
  private startedWith: QemuArgvOptions | undefined;
  private readonly serial = new SerialConsole((c) => this.console.append(c));
  private readonly events = new QmpEventLog();
  private readonly screen = new QemuScreenAndKeys(this.name, () => this.requireQmp(), (m) => this.log(m));
  /** Set before start: give the guest a vhost-user vsock device served by vhost-device-vsock. */
  private vsockUdsPath: string | undefined;
  private vsock: VhostVsockDaemon | undefined;
  private readonly ports: GuestPorts;
  /** The last start's steps (see StartSteps). */
  startSteps: StartSteps = {};

  readonly dir: string;

  constructor(
    name: string,
    options: NodeOptions,
    ctx: MachineContext,
    private readonly rt: QemuRuntime,
    private readonly net: RunNetwork | undefined,
  ) {
    super(name, options, ctx);
    this.dir = ctx.stateDir(name);
    this.ports = new GuestPorts({
      name,
      dir: this.dir,
      qemuPid: () => this.proc?.pid,
      qmp: () => this.requireQmp(),
      qmpIfAny: () => this.qmp,
      trackProcess: (pid, alive) => this.ctx.trackProcess(this.name, pid, alive),
      error: (m) => this.error(m),
    });
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** How QEMU ended ("exit code 0", "signal 9"), once it has. */
  get exitDescription(): string | undefined {
    return this.exitHow;
  }

  protected async doStart(): Promise<void> {
    // reboot() means a real boot: the kernel starts again, not a restore.
    const snapshots = this.coldNextStart ? "none" : "any";
    this.coldNextStart = false;
    try {
      await this.bootOnce(snapshots);
    } catch (e) {
      if (!(e instanceof SnapshotRestoreFailed)) throw e;
      e.slot.discard();
      this.log(`could not start from snapshot ${e.slot.file} (${e.message}): removed it, booting cold`);
      // Cold, and saving a good snapshot for the machines after this one.
      await this.bootOnce("save-only");
    }
  }

  private async bootOnce(snapshots: "any" | "save-only" | "none"): Promise<void> {
    // A machine started again (after a shutdown or a reboot without allowReboot) starts afresh.
    await this.dispose();
    this.qemuGone = new AbortController();
    this.stopping = false;
    this.exitHow = undefined;
    this.events.clear();
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const sock = (n: string) => join(this.dir, n);
    this.shellListener = await ShellListener.listen(sock("shell.sock"));
    await this.serial.listen(sock("serial.sock"));
    const hub = this.net?.needed ? await this.net.hub(this.net.vlansOf(this.name)[0]) : undefined;
    const moreVlans = hub ? await vlanNics(this.net!, this.name) : [];
    const o = this.options;
    const vsockArgs: string[] = [];
    if (this.vsockUdsPath) {
      this.vsock = await VhostVsockDaemon.start(sock("vhost-vsock.sock"), this.vsockUdsPath);
      if (this.vsock.pid !== undefined) this.ctx.trackProcess(this.name, this.vsock.pid, true);
      vsockArgs.push(...vhostVsockArgs(this.vsock.vhostSocket, o.memory ?? DEFAULT_MEMORY_MIB.qemu));
      this.log(`vsock: vhost-device-vsock (guest CID 3) on ${this.vsockUdsPath}`);
    }

    const base: QemuArgvOptions = {
      name: this.name,
      memoryMiB: o.memory ?? DEFAULT_MEMORY_MIB.qemu,
      cores: o.cores ?? 1,
      accel: this.rt.accel,
      qmpSocket: sock("qmp.sock"),
      shellSocket: sock("shell.sock"),
      killSocket: sock("kill.sock"),
      serial: { type: "socket", path: sock("serial.sock") },
      vnet: hub ? { socketPath: hub.path, mac: this.net!.mac(this.name) } : undefined,
      moreVnets: moreVlans.map((n) => ({ socketPath: n.hubPath, mac: n.mac })),
      extraArgs: [...vsockArgs, ...(o.qemuArgs ?? [])],
      allowReboot: this.startOptions.allowReboot === true,
    };
    const revived = this.rt.revive?.[this.name];
    const hubs = [hub?.path, ...moreVlans.map((n) => n.hubPath)];
    const plan = revived ? Promise.resolve().then(() => revivePlan({ revived, base, hubs, dir: this.dir, runAs: this.rt.reviveRunAs })) : planBoot({
      options: o,
      rt: this.rt,
      base,
      snapshots,
      hasVsock: this.vsockUdsPath !== undefined,
      vnets: (hub ? 1 : 0) + moreVlans.length,
      ownAppend: (extra) => this.ownAppend(hub !== undefined, extra),
      dir: this.dir,
      keepsState: this.ctx.keptStateDir !== undefined,
      disk: (image) => this.keptDisk(image),
      log: (m) => this.log(m),
    });
    const { file, args, env, snapshot, built } = await plan.catch((e: Error) => {
      throw this.error(`cannot start: ${e.message}`);
    });

    this.startedWith = built;
    const verified = snapshot?.mode === "restore" ? snapshot.slot.verify() : undefined;
    const how = revived ? `revived from ${revived.state}` : snapshot?.mode === "restore" ? `from snapshot ${snapshot.slot.key}` : "cold boot";
    this.log(`starting qemu (${this.rt.accel}, ${base.memoryMiB} MiB, ${base.cores} core${base.cores === 1 ? "" : "s"}, ${how})`);
    const t0 = performance.now();
    const steps: StartSteps = (this.startSteps = {});
    const step = (s: keyof StartSteps) => void (steps[s] = performance.now() - t0);
    // Its own process group: the ledger can kill a start script and its QEMU together.
    const netns = this.ports.namespace;
    const runAs = revived ? this.rt.reviveRunAs : undefined;
    const own = runAs ? asUnprivileged(runAs, [file, ...args]) : [file, ...args];
    const argv = netns ? inOwnNetNamespace(netns, own) : own;
    const { proc, exited } = spawnMachineProcess(this.ctx, this.name, argv, {
      cwd: this.dir,
      env,
      stdin: "ignore",
      outputStreams: ["stdout", "stderr"],
      onOutput: (c) => this.console.append(c),
    });
    this.proc = proc;
    this.exited = exited.then((how) => {
      this.exitHow = how;
      this.qemuGone.abort(new Error(`qemu exited (${how})`));
      this.shell?.close(new ShellClosedError(`qemu exited (${how})`));
      if (!this.stopping && this.isUp) {
        // Exit code 0: the guest powered itself off (or rebooted under -no-reboot).
        this.state = how === "exit code 0" ? "stopped" : "crashed";
        this.log(how === "exit code 0" ? "the guest powered off (qemu exited)" : `qemu exited unexpectedly (${how})`);
      }
    });

    try {
      this.qmp = await QmpClient.connect(sock("qmp.sock"), { timeoutMs: 30_000, signal: this.qemuGone.signal });
      step("qmp");
      this.qmp.on("event", (e) => {
        this.events.push(e);
        if (e.event === "RESET" && this.startOptions.allowReboot) this.onGuestReset();
      });
      this.killPort = await GuestKillPort.connect(sock("kill.sock"));
      if (revived) {
        // Loaded and left stopped: the breakpoint's freeze finds it frozen as it was saved.
        const fed = feedIncoming(sock("incoming.sock"), revived.state, {
          maxBytes: revived.maxStreamBytes,
          signal: this.qemuGone.signal,
          ...(runAs ? { wrap: (a: string[]) => asUnprivileged(runAs, a) } : {}),
        });
        await Promise.all([fed, waitRestored(this.qmp, 60_000, { start: false })]);
        await this.connectShell(true, true, false);
        this.identityByShell = true;
        this.log("loaded from the bundle, frozen");
        return;
      }
      if (snapshot?.mode === "restore") {
        try {
          // The digest is checked while QEMU loads, and before the guest runs.
          await waitRestored(this.qmp, 60_000, {
            beforeStart: async () => {
              step("loaded");
              const bad = await verified;
              if (bad) throw new Error(bad);
            },
          });
        } catch (e) {
          const why = this.exitHow ? `qemu exited (${this.exitHow})` : (e as Error).message;
          await this.kill();
          throw new SnapshotRestoreFailed(snapshot.slot, `${why}; ${this.console.tail(3).trim().split("\n").at(-1) ?? ""}`.replace(/; $/, ""));
        }
        step("running");
      }
      // The setup round trip stays for a restored guest too, though its bash was set up before
      // the save: without it the identity command is the first the waking guest reads, and
      // under load it ran seconds after it was sent, its clock that far behind (bench/vm).
      await this.connectShell(snapshot !== undefined, snapshot?.mode === "restore");
      step("shell");
      if (snapshot?.mode === "save") {
        // A systemd guest is saved once it has booted up and is at rest (guest-at-rest.ts), so
        // that restored machines need not boot and find their services listening.
        const rest = this.options.image !== undefined ? await this.shell!.run(AT_REST_SCRIPT, (this.options.bootTimeout ?? DEFAULT_BOOT_TIMEOUT_S) * 1000) : undefined;
        const restLine = rest?.stdout.toString().trim();
        if (rest && rest.status !== 0) {
          snapshot.slot.release();
          this.log(`snapshot not saved (${restLine || `the at-rest check exited with status ${rest.status}`}); later machines of this shape boot cold`);
        } else {
          if (restLine) this.log(`guest ${restLine}`);
          await saveForLater(this.qmp, snapshot.slot, (m) => this.log(m), snapshot.disk);
        }
      }
      // The stop and cont of saving and restoring are haltpoint's, not the test's events.
      if (snapshot) this.events.clear();
      this.identityByShell = snapshot !== undefined;
      if (snapshot) {
        steps.reseedWait = await this.personalize(snapshot.mode === "restore");
        step("identity");
      }
    } catch (e) {
      if (e instanceof SnapshotRestoreFailed) throw e;
      if (snapshot?.mode === "save") snapshot.slot.release();
      const why = this.exitHow ? `qemu exited (${this.exitHow})` : (e as Error).message;
      await this.kill();
      await new Promise((r) => setTimeout(r, 50)); // let the last console bytes arrive
      throw this.error(`boot failed: ${why}\nlast ${CONSOLE_TAIL_LINES} console lines:\n${this.console.tail(CONSOLE_TAIL_LINES)}`);
    }
    this.log(snapshot?.mode === "restore" ? `backdoor shell ready (restored in ${((performance.now() - t0) / 1000).toFixed(2)} s)` : "backdoor shell ready");
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

  /** The kernel command line that gives this machine its identity at boot (cold boots). */
  private ownAppend(onVnet: boolean, extra = this.options.append): string {
    return guestAppend(
      {
        hostname: this.name,
        ip: onVnet ? `${this.net!.address(this.name)}/24` : undefined,
        hosts: onVnet ? this.net!.hosts(this.name) : undefined,
      },
      extra,
    );
  }

  /** This run's identity for a guest that booted with the generic one (snapshot boots). */
  private async personalize(restored: boolean): Promise<number | undefined> {
    const nics = this.net?.needed ? this.net.nics(this.name).map((n) => ({ mac: n.mac, ip: `${n.address}/24` })) : [];
    const cmd = personalizeCommand({ hostname: this.name, hosts: this.net?.needed ? this.net.hosts(this.name) : undefined, nics }, { restored });
    const r = await this.shell!.run(cmd, 30_000);
    if (r.status !== 0) throw this.error(`cannot give the guest its identity after a snapshot boot (exit code ${r.status})`);
    return reseedWaitMs(r.stdout.toString());
  }

  private async keptDisk(image: string): Promise<string | DiskImage> {
    const dir = this.ctx.keptStateDir?.(this.name);
    this.keepsDisk = dir !== undefined;
    return dir ? keptDiskImage(dir, image, (m) => this.log(m)) : image;
  }

  /**
   * Wait for the guest's backdoor shell on hvc0 (at boot, and again after a reboot).
   * `personalizedLater`: the NICs are set up by personalize(); `restored`: the shell is
   * already up in the snapshot and prints no marker.
   */
  private async connectShell(personalizedLater = false, restored = false, init = true): Promise<void> {
    const bootTimeout = this.options.bootTimeout ?? DEFAULT_BOOT_TIMEOUT_S;
    const ready = restored
      ? await this.shellListener!.waitForConnection(30_000, this.qemuGone.signal)
      : await this.shellListener!.waitForMarker(bootTimeout * 1000, this.qemuGone.signal);
    this.shell = new BackdoorShell(ready.socket, ready.socket, (line) => this.console.append(`[backdoor] ${line}\n`));
    if (ready.rest.length) ready.socket.unshift(ready.rest);
    ready.socket.resume();
    // A revived guest's bash has `__hp` from its first life (and is stopped now).
    if (init) await this.shell.init("/tmp/.hp-out", 30_000, "true", RUNNING_FILE);
    // The image's /init configures eth1 (hp.ip); a machine on more vlans gets the rest here.
    const more = this.net?.needed && !personalizedLater ? this.net.nics(this.name).slice(1) : [];
    if (more.length) {
      const r = await this.shell.run(vlanSetupCommand(more), 30_000);
      if (r.status !== 0) throw this.error(`cannot configure the NICs of vlans ${more.map((n) => n.vlan).join(", ")} (exit code ${r.status})`);
    }
  }

  /** The guest reset itself (allowReboot): its old shell is gone, a new one will come up
   *  on the same virtconsole; commands wait for it (NixOS reconnects the same way). */
  private onGuestReset(): void {
    if (this.reconnecting || !this.shell) return;
    this.shell.detach(new ConnectionLostError(this.name, "the guest rebooted"));
    this.shell = undefined;
    this.log("the guest rebooted: waiting for its backdoor shell");
    // A snapshot-booted guest's kernel command line has the generic identity: give it its own again.
    this.reconnecting = this.connectShell(this.identityByShell)
      .then(() => (this.identityByShell ? this.personalize(false) : undefined))
      .then(() => this.log("backdoor shell ready (after reboot)"))
      .finally(() => (this.reconnecting = undefined));
    this.reconnecting.catch((e: Error) => this.log(`no backdoor shell after the reboot: ${e.message}`));
  }

  /** A rebooting guest's commands wait for its new shell. */
  protected override async beforeCommand(): Promise<void> {
    // A failed reconnect fails the command that follows (the machine is down): this only waits.
    if (this.reconnecting) await this.reconnecting.catch(() => {});
  }

  protected killCommand(id: number): void {
    this.killPort?.killCommand(id);
  }

  private requireQmp(): QmpClient {
    if (!this.qmp || this.qmp.closed || !this.isUp) throw this.error(`qemu is not running (state ${this.state})`);
    return this.qmp;
  }

  protected async doFreeze(): Promise<void> {
    await this.requireQmp().stop();
  }

  protected async doThaw(): Promise<void> {
    await this.requireQmp().cont();
  }

  protected async doShutdown(): Promise<void> {
    this.stopping = true;
    // ACPI power button: the guest powers off cleanly (its acpid runs `poweroff`).
    // Without the power button press the guest will not power off: the timer below kills it.
    await this.requireQmp()
      .systemPowerdown()
      .catch((e: Error) => this.log(`system_powerdown failed: ${e.message}`));
    const timer = setTimeout(() => {
      this.log(`did not power off within ${SHUTDOWN_TIMEOUT_MS / 1000} s: killing qemu`);
      void this.kill();
    }, SHUTDOWN_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  protected async doCrash(): Promise<void> {
    this.stopping = true;
    // QMP quit flushes the qcow2 overlay's metadata, which a SIGKILL would lose.
    if (this.keepsDisk) await Promise.race([this.qmp?.quit().catch((e: Error) => this.log(`QMP quit failed (the kept disk may miss its last writes): ${e.message}`)), new Promise((r) => setTimeout(r, 10_000))]);
    await this.kill();
  }

  private async kill(): Promise<void> {
    const pid = this.proc?.pid;
    if (pid !== undefined) {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, "SIGKILL");
        } catch {
          /* gone */
        }
      }
    }
    await this.exited;
  }

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
      await this.reconnecting;
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

  private async waitForExit(timeoutMs: number, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs)));
    const late = await Promise.race([this.exited.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) throw this.error(`${what}: the guest did not power off within ${timeoutMs / 1000} s`);
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

  private async withCommandChecks<T>(fn: () => Promise<T>): Promise<T> {
    await this.autoStart();
    await this.ctx.aroundCommand?.(this.name);
    const r = await fn();
    await this.ctx.aroundCommand?.(this.name);
    return r;
  }

  protected override async dispose(): Promise<void> {
    // A new QEMU has new forwards (and, in its own namespace, a new relay).
    const log = (m: string): void => this.log(m);
    await bestEffort(log, "closing its port forwards", this.ports.close());
    if (this.vsock) {
      const pid = this.vsock.pid;
      await bestEffort(log, "stopping vhost-device-vsock", this.vsock.stop());
      if (pid !== undefined) this.ctx.trackProcess(this.name, pid, false);
      this.vsock = undefined;
    }
    this.qmp?.close();
    this.killPort?.close();
    if (this.shellListener) await bestEffort((m) => this.log(m), "closing the shell listener", this.shellListener.close());
    this.serial.close();
    this.events.clear();
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
}

export function createQemuMachine(node: ResolvedNode, ctx: MachineContext, rt: { qemu?: QemuRuntime; network?: RunNetwork }): QemuMachine {
  if (!rt.qemu) throw new Error(`machine ${node.name}: no guest image was prepared for the qemu backend`);
  return new QemuMachine(node.name, node.options, ctx, rt.qemu, rt.network);
}
