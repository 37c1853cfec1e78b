import type { ResultPromise } from "execa";
import { mkdirSync } from "node:fs";
import { keptDiskImage } from "./kept-disk.ts";
import { mkdir, rm } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { BackdoorShell, ShellClosedError, ShellTimeoutError } from "../backdoor-shell.ts";
import { BaseMachine, type MachineContext } from "../machine.ts";
import type { ResolvedNode } from "../node-options.ts";
import type { NodeOptions, QmpEventMessage, WaitOptions } from "../types.ts";
import { ConnectionLostError } from "../errors.ts";
import { QemuScreenAndKeys } from "./screen-and-keys.ts";
import { QmpEventLog } from "./qmp-event-log.ts";
import { guestAppend } from "../image/guest-params.ts";
import { QEMU_BINARY, QEMU_IDS, buildQemuArgv, type DiskImage, type QemuArgvOptions } from "./qemu-argv.ts";
import { QmpClient } from "./qmp.ts";
import { ShellListener } from "./shell-listener.ts";
import { vlanNics, vlanSetupCommand, type RunNetwork } from "./run-network.ts";
import { startScriptArgs } from "./start-script.ts";
import { fdOfSocket, newForwardPort, parseUsernet, socketInode } from "./usernet.ts";
import { VhostVsockDaemon, vhostVsockArgs } from "./vhost-vsock.ts";
import { HostForward } from "./host-forward.ts";
import { inOwnNetNamespace, netNamespaceMode, type NetNamespaceMode } from "./net-namespace.ts";
import { NetnsRelay } from "./netns-relay.ts";
import { GuestKillPort } from "./kill-port.ts";
import { descendantsOf } from "../local/process-tree.ts";
import { spawnMachineProcess } from "../machine-process.ts";
import { personalizeCommand } from "../image/guest-personalize.ts";
import { planSnapshotBoot, saveForLater, snapshotEligible, IDENTITY_DEVICES, type SnapshotBoot } from "./snapshot-boot.ts";
import { restoreArgs, waitRestored } from "./snapshot-format.ts";
import type { SnapshotSlot } from "./snapshot-store.ts";

/** A snapshot that did not load: the machine falls back to a cold boot. */
class SnapshotRestoreFailed extends Error {
  constructor(
    readonly slot: SnapshotSlot,
    message: string,
  ) {
    super(message);
  }
}

/** What the main thread decided for every qemu machine of the run. */
export interface QemuRuntime {
  kernel: string;
  initrd: string;
  accel: "kvm" | "tcg";
  /** Snapshot boots for machines of haltpoint's own image (off with --no-snapshot-boot). */
  snapshotBoot?: boolean;
}

const DEFAULT_BOOT_TIMEOUT_S = 300;
const SHUTDOWN_TIMEOUT_MS = 60_000;
const CONSOLE_TAIL_LINES = 50;

/**
 * A real virtual machine: QEMU started with execa, QMP for stop/cont/screendump/quit, the
 * serial console captured into the machine's console log, and commands through the
 * backdoor shell on the guest's /dev/hvc0 (a UNIX socket this worker listens on).
 */
export class QemuMachine extends BaseMachine {
  readonly backend = "qemu" as const;
  private proc: ResultPromise | undefined;
  private qmp: QmpClient | undefined;
  private shell: BackdoorShell | undefined;
  private shellListener: ShellListener | undefined;
  private killPort: GuestKillPort | undefined;
  private serialServer: Server | undefined;
  private exited: Promise<void> = Promise.resolve();
  private exitHow: string | undefined;
  private stopping = false;
  /** A kept disk (--keep-machine-state): QEMU must flush it before it is killed. */
  private keepsDisk = false;
  private qemuGone = new AbortController();
  /** Set while a rebooted guest's backdoor shell is awaited (start({allowReboot})). */
  private reconnecting: Promise<void> | undefined;
  /** Snapshot boots: the guest booted with the image's generic identity and got its own through the shell. */
  private identityByShell = false;
  private coldNextStart = false;
  private serialSocket: Socket | undefined;
  private readonly events = new QmpEventLog();
  private readonly screen = new QemuScreenAndKeys(this.name, () => this.requireQmp(), (m) => this.log(m));
  /** Loopback ports that forward to guest ports (user networking), by guest port. */
  private readonly loopbackForwards = new Map<number, Promise<number>>();
  /** Set before start: give the guest a vhost-user vsock device served by vhost-device-vsock. */
  private vsockUdsPath: string | undefined;
  private vsock: VhostVsockDaemon | undefined;
  /** Set before start: QEMU runs in a network namespace of its own (net-namespace.ts). */
  private netns: NetNamespaceMode | undefined;
  /** The relay into that namespace, started on first use. */
  private relay: Promise<NetnsRelay> | undefined;
  /** forwardPort()'s host listeners, when QEMU's own forwards are inside its namespace. */
  private readonly hostForwards: HostForward[] = [];
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
    await this.listenSerial(sock("serial.sock"));
    const hub = this.net?.needed ? await this.net.hub(this.net.vlansOf(this.name)[0]) : undefined;
    const moreVlans = hub ? await vlanNics(this.net!, this.name) : [];
    const o = this.options;
    const vsockArgs: string[] = [];
    if (this.vsockUdsPath) {
      this.vsock = await VhostVsockDaemon.start(sock("vhost-vsock.sock"), this.vsockUdsPath);
      if (this.vsock.pid !== undefined) this.ctx.trackProcess(this.name, this.vsock.pid, true);
      vsockArgs.push(...vhostVsockArgs(this.vsock.vhostSocket, o.memory ?? 512));
      this.log(`vsock: vhost-device-vsock (guest CID 3) on ${this.vsockUdsPath}`);
    }

    const base: QemuArgvOptions = {
      name: this.name,
      memoryMiB: o.memory ?? 512,
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
    let file: string;
    let args: string[];
    let env: Record<string, string> = {};
    let snapshot: SnapshotBoot | undefined;
    if (o.startScript) {
      // A NixOS-style run-<name>-vm script brings its own kernel, disk and memory; we add
      // our sockets through QEMU_OPTS, as the NixOS driver does.
      file = o.startScript;
      args = [];
      env = { QEMU_OPTS: startScriptArgs(base).join(" ") };
    } else if (snapshots !== "none" && snapshotEligible(o, this.rt.snapshotBoot === true, this.vsockUdsPath !== undefined)) {
      base.extraArgs = [...IDENTITY_DEVICES, ...(base.extraArgs ?? [])];
      snapshot = planSnapshotBoot({
        kernel: this.rt.kernel,
        initrd: this.rt.initrd,
        memoryMiB: base.memoryMiB,
        cores: base.cores,
        accel: base.accel,
        vnets: (hub ? 1 : 0) + moreVlans.length,
        extraArgs: base.extraArgs ?? [],
        append: o.append ?? "",
        allowReboot: base.allowReboot === true,
      }, { restore: snapshots === "any" });
      if (snapshot?.mode === "save" && snapshot.replaced) this.log(snapshot.replaced);
      // The snapshot's guest booted with the image's generic identity; this machine's own
      // is applied through the shell (personalize below), restored or not.
      const append = snapshot ? guestAppend({}, o.append) : this.ownAppend(hub !== undefined);
      file = QEMU_BINARY;
      args = buildQemuArgv({ ...base, shellPort: "named", kernel: this.rt.kernel, initrd: this.rt.initrd, append });
      if (snapshot?.mode === "restore") args.push(...restoreArgs(snapshot.slot.file));
    } else {
      const useOwnKernel = !o.diskImage || o.kernel;
      const kernel = o.kernel ?? (useOwnKernel ? this.rt.kernel : undefined);
      const initrd = o.initrd ?? (o.kernel ? undefined : useOwnKernel ? this.rt.initrd : undefined);
      const append = kernel ? this.ownAppend(hub !== undefined) : undefined;
      file = QEMU_BINARY;
      // haltpoint's own initramfs reads its shell from the named port; other guests from hvc0.
      const ownImage = initrd === this.rt.initrd;
      args = buildQemuArgv({ ...base, shellPort: ownImage ? "named" : "console", kernel, initrd, append, diskImage: o.diskImage && (await this.keptDisk(o.diskImage)) });
    }

    const how = snapshot?.mode === "restore" ? `from snapshot ${snapshot.slot.key}` : "cold boot";
    this.log(`starting qemu (${this.rt.accel}, ${base.memoryMiB} MiB, ${base.cores} core${base.cores === 1 ? "" : "s"}, ${how})`);
    const t0 = performance.now();
    // Its own process group: the ledger can kill a start script and its QEMU together.
    const argv = this.netns ? inOwnNetNamespace(this.netns, [file, ...args]) : [file, ...args];
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
      this.qmp.on("close", () => {});
      this.qmp.on("event", (e) => {
        this.events.push(e);
        if (e.event === "RESET" && this.startOptions.allowReboot) this.onGuestReset();
      });
      this.killPort = await GuestKillPort.connect(sock("kill.sock"));
      if (snapshot?.mode === "restore") {
        try {
          await waitRestored(this.qmp, 60_000);
        } catch (e) {
          const why = this.exitHow ? `qemu exited (${this.exitHow})` : (e as Error).message;
          await this.kill();
          throw new SnapshotRestoreFailed(snapshot.slot, `${why}; ${this.console.tail(3).trim().split("\n").at(-1) ?? ""}`.replace(/; $/, ""));
        }
      }
      await this.connectShell(snapshot !== undefined, snapshot?.mode === "restore");
      if (snapshot?.mode === "save") await saveForLater(this.qmp, snapshot.slot, (m) => this.log(m));
      // The stop and cont of saving and restoring are haltpoint's, not the test's events.
      if (snapshot) this.events.clear();
      this.identityByShell = snapshot !== undefined;
      if (snapshot) await this.personalize(snapshot.mode === "restore");
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

  /** The kernel command line that gives this machine its identity at boot (cold boots). */
  private ownAppend(onVnet: boolean): string {
    return guestAppend(
      {
        hostname: this.name,
        ip: onVnet ? `${this.net!.address(this.name)}/24` : undefined,
        hosts: onVnet ? this.net!.hosts(this.name) : undefined,
      },
      this.options.append,
    );
  }

  /** This run's identity for a guest that booted with the generic one (snapshot boots). */
  private async personalize(restored: boolean): Promise<void> {
    const nics = this.net?.needed ? this.net.nics(this.name).map((n) => ({ mac: n.mac, ip: `${n.address}/24` })) : [];
    const cmd = personalizeCommand({ hostname: this.name, hosts: this.net?.needed ? this.net.hosts(this.name) : undefined, nics }, { restored });
    const r = await this.shell!.run(cmd, 30_000);
    if (r.status !== 0) throw this.error(`cannot give the guest its identity after a snapshot boot (exit code ${r.status})`);
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
  private async connectShell(personalizedLater = false, restored = false): Promise<void> {
    const bootTimeout = this.options.bootTimeout ?? DEFAULT_BOOT_TIMEOUT_S;
    const ready = restored
      ? await this.shellListener!.waitForConnection(30_000, this.qemuGone.signal)
      : await this.shellListener!.waitForMarker(bootTimeout * 1000, this.qemuGone.signal);
    this.shell = new BackdoorShell(ready.socket, ready.socket, (line) => this.console.append(`[backdoor] ${line}\n`));
    if (ready.rest.length) ready.socket.unshift(ready.rest);
    ready.socket.resume();
    await this.shell.init("/tmp/.hp-out", 30_000);
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

  private async listenSerial(path: string): Promise<void> {
    await rm(path, { force: true });
    const server = createServer((s) => {
      this.serialSocket = s;
      s.on("data", (c: Buffer) => this.console.append(c));
      s.on("error", () => {});
    });
    this.serialServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
  }

  protected async rawExecute(cmd: string, timeoutMs: number): Promise<{ status: number; stdout: Buffer }> {
    if (this.reconnecting) await this.reconnecting.catch(() => {});
    if (!this.shell) throw this.error("not started");
    try {
      return await this.shell.run(cmd, timeoutMs, () => this.killPort?.killRunningCommand());
    } catch (e) {
      if (e instanceof ShellTimeoutError) throw this.error(`command \`${cmd}\` ${e.message}`, cmd);
      if (e instanceof ShellClosedError) {
        await Promise.race([this.exited, new Promise((r) => setTimeout(r, 1000))]);
        throw new ConnectionLostError(this.name, `${this.exitHow ? `qemu exited (${this.exitHow})` : e.message} during \`${cmd}\``, cmd);
      }
      throw e;
    }
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
    await this.requireQmp().systemPowerdown().catch(() => {});
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
    if (this.keepsDisk) await Promise.race([this.qmp?.quit().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
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
    if (!this.serialSocket || this.serialSocket.destroyed) throw this.error("sendConsole: the serial console is not connected (is the machine running?)");
    this.log(`sending to the serial console: ${JSON.stringify(text)}`);
    const s = this.serialSocket;
    await new Promise<void>((resolve, reject) => s.write(text, (e) => (e ? reject(e) : resolve())));
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
    this.loopbackForwards.clear();
    for (const f of this.hostForwards.splice(0)) await f.close();
    const relay = await this.relay?.catch(() => undefined);
    this.relay = undefined;
    if (relay) {
      const pid = relay.pid;
      await relay.stop();
      if (pid !== undefined) this.ctx.trackProcess(this.name, pid, false);
    }
    if (this.vsock) {
      const pid = this.vsock.pid;
      await this.vsock.stop();
      if (pid !== undefined) this.ctx.trackProcess(this.name, pid, false);
      this.vsock = undefined;
    }
    this.qmp?.close();
    this.killPort?.close();
    await this.shellListener?.close().catch(() => {});
    this.serialServer?.close();
    this.serialSocket?.destroy();
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
    if (this.netns) {
      // QEMU's forward is inside its namespace: a fresh one there, and the host port here.
      const inner = await this.addForward(guestPort);
      const fwd = await HostForward.listen(hostPort, async () => (await (await this.relayIntoNamespace()).connect(inner)).socket).catch((e: Error) => {
        throw this.error(`forwardPort(${hostPort}, ${guestPort}): ${e.message}`);
      });
      this.hostForwards.push(fwd);
      return;
    }
    const out = await this.requireQmp().humanMonitorCommand(`hostfwd_add ${QEMU_IDS.userNetdev} tcp:127.0.0.1:${hostPort}-:${guestPort}`);
    if (out.trim()) throw this.error(`forwardPort(${hostPort}, ${guestPort}): ${out.trim()}`);
  }

  /**
   * Before start: give the guest a virtio-vsock device through vhost-device-vsock, whose
   * hybrid-vsock socket (`CONNECT <port>` → the guest's AF_VSOCK port) will be `udsPath`.
   */
  useVhostVsock(udsPath: string): void {
    if (this.state !== "created") throw this.error("useVhostVsock() must come before start()");
    this.vsockUdsPath = udsPath;
  }

  /** The hybrid-vsock socket of the guest's vsock device, when it has one. */
  get vsockSocket(): string | undefined {
    return this.vsock?.udsPath;
  }

  /**
   * A port on 127.0.0.1 that QEMU forwards to the guest's `guestPort` (user networking), made
   * on first use on a port the kernel picks (`hostfwd_add …:0`), so no free-port race; read
   * back from `info usernet`. Never bound beyond loopback.
   */
  loopbackForward(guestPort: number): Promise<number> {
    let p = this.loopbackForwards.get(guestPort);
    if (!p) {
      p = this.addForward(guestPort);
      p.catch(() => this.loopbackForwards.delete(guestPort));
      this.loopbackForwards.set(guestPort, p);
    }
    return p;
  }

  /** A new user-network forward from 127.0.0.1 (a port the kernel picks) to `guestPort`: its port. */
  private async addForward(guestPort: number): Promise<number> {
    const qmp = this.requireQmp();
    const before = parseUsernet(await qmp.humanMonitorCommand("info usernet"));
    const out = await qmp.humanMonitorCommand(`hostfwd_add ${QEMU_IDS.userNetdev} tcp:127.0.0.1:0-:${guestPort}`);
    if (out.trim()) throw this.error(`cannot forward a loopback port to guest port ${guestPort}: ${out.trim()}`);
    const port = newForwardPort(before, parseUsernet(await qmp.humanMonitorCommand("info usernet")), guestPort);
    if (port === undefined) throw this.error(`added a forward to guest port ${guestPort} but cannot find it in \`info usernet\``);
    return port;
  }

  /**
   * Before start: run QEMU in a network namespace of its own, so that the forwards to the
   * guest's ports (the SSH backdoor's) are on a loopback no other local user can reach.
   * Throws, saying why, where this host cannot make one.
   */
  usePrivateNetwork(): void {
    if (this.state !== "created") throw this.error("usePrivateNetwork() must come before start()");
    const mode = netNamespaceMode();
    if (mode.kind === "none") throw new Error(`cannot give qemu a network namespace of its own (${mode.why}), and a forward on the host's loopback would let every local user in`);
    this.netns = mode;
  }

  /** The relay into QEMU's namespace (started on first use, for this QEMU process). */
  private relayIntoNamespace(): Promise<NetnsRelay> {
    const pid = this.proc?.pid;
    if (!this.netns || pid === undefined) return Promise.reject(this.error("qemu is not running in a network namespace of its own"));
    if (!this.relay) {
      const relay = NetnsRelay.start(this.netns, pid, join(this.dir, "relay.sock")).then((r) => {
        if (r.pid !== undefined) this.ctx.trackProcess(this.name, r.pid, true);
        return r;
      });
      relay.catch(() => (this.relay = undefined));
      this.relay = relay;
    }
    return this.relay;
  }

  /**
   * A TCP connection to the guest's `guestPort` through a loopback forward, resolved once
   * the guest has accepted it (not merely QEMU: see usernet.ts), rejected if the guest
   * refuses or does not answer within `timeoutMs`. The socket comes back paused, with any
   * bytes the guest already sent put back.
   */
  async openGuestPort(guestPort: number, timeoutMs = 15_000): Promise<Socket> {
    const hostPort = await this.loopbackForward(guestPort);
    let s: Socket;
    let localPort: number | undefined;
    if (this.netns) {
      ({ socket: s, innerLocalPort: localPort } = await (await this.relayIntoNamespace()).connect(hostPort));
      s.resume();
    } else {
      s = connect({ host: "127.0.0.1", port: hostPort, allowHalfOpen: true });
      await new Promise<void>((resolve, reject) => {
        s.once("connect", resolve);
        s.once("error", reject);
      });
      s.removeAllListeners("error");
      localPort = s.localPort;
    }
    // The forward's connection table is QEMU's network namespace's (which may not be ours).
    const table = this.proc?.pid !== undefined ? `/proc/${this.proc.pid}/net/tcp` : "/proc/net/tcp";
    const refused = (): Error => this.error(`guest port ${guestPort} is not open (the guest refused the connection)`);
    return new Promise<Socket>((resolve, reject) => {
      const head: Buffer[] = [];
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        s.off("data", onData);
        s.off("end", onEnd);
        s.off("close", onEnd);
        s.off("error", onEnd);
        if (err) {
          s.destroy();
          return reject(err);
        }
        s.pause();
        if (head.length) s.unshift(Buffer.concat(head));
        resolve(s);
      };
      const onData = (d: Buffer): void => {
        head.push(d);
        finish();
      };
      const onEnd = (): void => finish(refused());
      s.on("data", onData);
      s.on("end", onEnd);
      s.on("close", onEnd);
      s.on("error", onEnd);
      void (async () => {
        const started = Date.now();
        let fd: number | undefined;
        while (!done) {
          await new Promise((r) => setTimeout(r, fd === undefined ? 5 : 20));
          if (done) return;
          if (Date.now() - started > timeoutMs) return finish(this.error(`guest port ${guestPort} did not answer within ${timeoutMs / 1000} s`));
          if (fd === undefined) {
            const inode = localPort !== undefined ? socketInode(hostPort, localPort, table) : undefined;
            const pid = this.proc?.pid;
            if (inode !== undefined && pid !== undefined) fd = fdOfSocket([pid, ...descendantsOf(pid)], inode);
            // /proc does not tell (hidepid, another user's QEMU): still open after a while counts as accepted.
            if (fd === undefined && Date.now() - started > 1000) return finish();
            if (fd === undefined) continue;
          }
          const text = await this.qmp?.humanMonitorCommand("info usernet").catch(() => undefined);
          if (text === undefined) return finish(this.error("qemu is not running"));
          const row = parseUsernet(text).find((r) => r.fd === fd && r.state !== "HOST_FORWARD");
          if (row && row.state !== "SYN_SENT" && row.state !== "SYN_RECEIVED") return finish();
          // No row: slirp dropped it (the guest refused); our socket's end follows.
        }
      })();
    });
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
