import type { ResultPromise } from "execa";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ShellClosedError } from "../backdoor-shell.ts";
import type { MachineContext } from "../machine.ts";
import { GuestMachine } from "../guest-machine.ts";
import { DEFAULT_MEMORY_MIB } from "../node-options.ts";
import type { NodeOptions } from "../types.ts";
import { spawnMachineProcess } from "../machine-process.ts";
import { bestEffort } from "../../common/teardown.ts";
import { QmpEventLog } from "./qmp-event-log.ts";
import type { DiskImage, QemuArgvOptions } from "./qemu-argv.ts";
import { QmpClient } from "./qmp.ts";
import { GuestShellLink } from "./guest-shell-link.ts";
import { vlanNics, type RunNetwork } from "./run-network.ts";
import { VhostVsockDaemon, vhostVsockArgs } from "./vhost-vsock.ts";
import { GuestPorts } from "./guest-ports.ts";
import { inOwnNetNamespace } from "./net-namespace.ts";
import { GuestKillPort } from "./kill-port.ts";
import { keptDiskImage } from "./kept-disk.ts";
import { planBoot } from "./boot-plan.ts";
import { revivePlan } from "./revive-plan.ts";
import { SerialConsole } from "./serial-console.ts";
import { asUnprivileged } from "./unprivileged-qemu.ts";
import type { QemuRuntime } from "./qemu-runtime.ts";
import { identityAppend } from "./guest-identity.ts";
import { snapshotQmpReady } from "./snapshot-boot.ts";
import { CONSOLE_TAIL_LINES, SnapshotRestoreFailed, loadCheckedSnapshot, loadRevivedState, saveWhenAtRest, type StartSteps } from "./qemu-boot.ts";
import { restorePrep } from "../image/guest-restore-prep.ts";

const SHUTDOWN_TIMEOUT_MS = 60_000;

/**
 * One QEMU's life, the part of QemuMachine (qemu-machine.ts) that owns the process: started
 * (a cold boot, from a snapshot, or revived from a bundle; qemu-boot.ts has the steps), its
 * backdoor shell awaited (again after a reboot), frozen and thawed through QMP, powered off or
 * killed, and its sockets, daemons and forwards torn down before the next start.
 */
export abstract class QemuLifecycle extends GuestMachine {
  private proc: ResultPromise | undefined;
  private qmp: QmpClient | undefined;
  protected readonly processName = "qemu";
  private killPort: GuestKillPort | undefined;
  protected stopping = false;
  /** A kept disk (--keep-machine-state): QEMU must flush it before it is killed. */
  private keepsDisk = false;
  private qemuGone = new AbortController();
  protected coldNextStart = false;
  /** What the argv builder took for the running QEMU (not for a start script): what a bundle records. */
  protected startedWith: QemuArgvOptions | undefined;
  protected readonly serial = new SerialConsole((c) => this.console.append(c));
  protected readonly events = new QmpEventLog();
  /** Set before start: give the guest a vhost-user vsock device served by vhost-device-vsock. */
  protected vsockUdsPath: string | undefined;
  protected vsock: VhostVsockDaemon | undefined;
  protected readonly ports: GuestPorts;
  protected readonly shellLink: GuestShellLink;
  /** The last start's steps (see StartSteps). */
  startSteps: StartSteps = {};

  readonly dir: string;

  constructor(
    name: string,
    options: NodeOptions,
    ctx: MachineContext,
    protected readonly rt: QemuRuntime,
    protected readonly net: RunNetwork | undefined,
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
    this.shellLink = new GuestShellLink({
      name,
      options,
      net,
      shell: () => this.shell,
      setShell: (shell) => void (this.shell = shell),
      consoleLine: (line) => this.console.append(`[backdoor] ${line}\n`),
      log: (m) => this.log(m),
      error: (m) => this.error(m),
      identityByPrograms: rt.restoreAsBefore?.identity === "programs",
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
    await this.shellLink.listen(sock("shell.sock"), this.qemuGone.signal);
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
      this.qmp = await QmpClient.connect(sock("qmp.sock"), { timeoutMs: 30_000, signal: this.qemuGone.signal, retryMs: this.rt.restoreAsBefore?.qmpRetryMs });
      step("qmp");
      this.qmp.on("event", (e) => {
        this.events.push(e);
        if (e.event === "RESET" && this.startOptions.allowReboot) this.shellLink.onGuestReset();
      });
      this.killPort = await GuestKillPort.connect(sock("kill.sock"));
      if (snapshot?.mode === "save") await snapshotQmpReady(this.qmp, snapshot);
      if (revived) {
        await loadRevivedState(this.qmp, sock("incoming.sock"), revived, { runAs, signal: this.qemuGone.signal });
        await this.shellLink.connect(true, true, false);
        this.shellLink.identityByShell = true;
        this.log("loaded from the bundle, frozen");
        return;
      }
      if (snapshot?.mode === "restore") {
        try {
          await snapshotQmpReady(this.qmp, snapshot);
          await loadCheckedSnapshot(this.qmp, verified, () => step("loaded"));
        } catch (e) {
          const why = this.exitHow ? `qemu exited (${this.exitHow})` : (e as Error).message;
          await this.kill();
          throw new SnapshotRestoreFailed(snapshot.slot, `${why}; ${this.console.tail(3).trim().split("\n").at(-1) ?? ""}`.replace(/; $/, ""));
        }
        step("running");
      }
      // A restored guest's identity command is its shell's first, one round trip: the shell was
      // set up and prepared before the snapshot was saved (guest-restore-prep.ts), so it runs in
      // the shell itself with nothing sent before it. It is made once the guest's shell has
      // connected (the guest runs), so the host's time in it is fresh; its clock is the later of
      // that and QEMU's RTC (guest-personalize.ts).
      const before = this.rt.restoreAsBefore?.identity;
      const restoring = snapshot?.mode === "restore";
      const identity = restoring && (before === undefined || before === "with-setup") ? () => this.shellLink.identityCommand(true, before === undefined) : undefined;
      const first = await this.shellLink.connect(snapshot !== undefined, restoring, restoring && before === undefined ? "kept" : true, identity);
      step("shell");
      if (snapshot?.mode === "save") await saveWhenAtRest(this.shell!, this.qmp, snapshot, this.options, restorePrep(this.rt).script, (m) => this.log(m));
      // The stop and cont of saving and restoring are haltpoint's, not the test's events.
      if (snapshot) this.events.clear();
      this.shellLink.identityByShell = snapshot !== undefined;
      if (snapshot) {
        steps.reseedWait = identity ? this.shellLink.identityApplied(first!) : await this.shellLink.personalize(snapshot.mode === "restore");
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

  /** The kernel command line that gives this machine its identity at boot (cold boots). */
  private ownAppend(onVnet: boolean, extra = this.options.append): string {
    return identityAppend(this.name, this.net, onVnet, extra);
  }

  private async keptDisk(image: string): Promise<string | DiskImage> {
    const dir = this.ctx.keptStateDir?.(this.name);
    this.keepsDisk = dir !== undefined;
    return dir ? keptDiskImage(dir, image, (m) => this.log(m)) : image;
  }

  /** A rebooting guest's commands wait for its new shell. */
  protected override async beforeCommand(): Promise<void> {
    // A failed reconnect fails the command that follows (the machine is down): this only waits.
    if (this.shellLink.reconnecting) await this.shellLink.reconnecting.catch(() => {});
  }

  protected killCommand(id: number): void {
    this.killPort?.killCommand(id);
  }

  protected requireQmp(): QmpClient {
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

  protected async waitForExit(timeoutMs: number, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs)));
    const late = await Promise.race([this.exited.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) throw this.error(`${what}: the guest did not power off within ${timeoutMs / 1000} s`);
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
    await bestEffort((m) => this.log(m), "closing the shell listener", this.shellLink.close());
    this.serial.close();
    this.events.clear();
  }
}
