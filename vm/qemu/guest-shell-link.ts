import { BackdoorShell, type ShellReply } from "../backdoor-shell.ts";
import { ConnectionLostError } from "../errors.ts";
import { reseedWaitMs } from "../image/guest-personalize.ts";
import { GUEST_OUT_FILE } from "../image/guest-restore-prep.ts";
import type { NodeOptions } from "../types.ts";
import { identityCommand } from "./guest-identity.ts";
import { RUNNING_FILE } from "./kill-port.ts";
import { DEFAULT_BOOT_TIMEOUT_S } from "./qemu-boot.ts";
import { vlanSetupCommand, type RunNetwork } from "./run-network.ts";
import { ShellListener } from "./shell-listener.ts";

/** What the link needs of its machine: the machine's `shell` is the link's to set. */
export interface ShellLinkHost {
  name: string;
  options: NodeOptions;
  net: RunNetwork | undefined;
  shell(): BackdoorShell | undefined;
  setShell(shell: BackdoorShell | undefined): void;
  /** A line the backdoor shell logged, for the machine's console log. */
  consoleLine(line: string): void;
  log(message: string): void;
  error(message: string): Error;
  /** bench/vm's knob: give the identity with a program per fact, as before issue #26. */
  readonly identityByPrograms: boolean;
}

/**
 * A qemu machine's way to its guest's backdoor shell on hvc0 (a UNIX socket this worker
 * listens on): awaited at boot, and again after the guest reset itself (allowReboot), when a
 * snapshot-booted guest also gets its own identity again.
 */
export class GuestShellLink {
  private listener: ShellListener | undefined;
  private qemuGone: AbortSignal | undefined;
  /** Set while a rebooted guest's backdoor shell is awaited (start({allowReboot})). */
  reconnecting: Promise<void> | undefined;
  /** Snapshot boots: the guest booted with the image's generic identity and got its own through the shell. */
  identityByShell = false;

  constructor(private readonly m: ShellLinkHost) {}

  /** Listen on `path` for this start's QEMU; waiting ends when `qemuGone` aborts. */
  async listen(path: string, qemuGone: AbortSignal): Promise<void> {
    this.qemuGone = qemuGone;
    this.listener = await ShellListener.listen(path);
  }

  /**
   * Wait for the guest's backdoor shell on hvc0 (at boot, and again after a reboot).
   * `personalizedLater`: the NICs are set up by personalize(); `restored`: the shell is
   * already up in the snapshot and prints no marker. `init`: send the shell's setup, then
   * `first` as a command; "kept": the snapshot's shell was set up (and prepared,
   * guest-restore-prep.ts) before it was saved, so `first` runs in the shell itself at once;
   * false: neither (a revived guest's bash has `__hp` from its first life, and is stopped now).
   */
  async connect(personalizedLater = false, restored = false, init: boolean | "kept" = true, first: string | (() => string) = "true"): Promise<ShellReply | undefined> {
    const bootTimeout = this.m.options.bootTimeout ?? DEFAULT_BOOT_TIMEOUT_S;
    const ready = restored
      ? await this.listener!.waitForConnection(30_000, this.qemuGone)
      : await this.listener!.waitForMarker(bootTimeout * 1000, this.qemuGone);
    const shell = new BackdoorShell(ready.socket, ready.socket, (line) => this.m.consoleLine(line));
    this.m.setShell(shell);
    if (ready.rest.length) ready.socket.unshift(ready.rest);
    ready.socket.resume();
    const cmd = () => (typeof first === "function" ? first() : first);
    const reply = init === "kept" ? await shell.runInShell(cmd(), 30_000) : init ? await shell.init(GUEST_OUT_FILE, 30_000, cmd(), RUNNING_FILE) : undefined;
    // The image's /init configures eth1 (hp.ip); a machine on more vlans gets the rest here.
    const net = this.m.net;
    const more = net?.needed && !personalizedLater ? net.nics(this.m.name).slice(1) : [];
    if (more.length) {
      const r = await shell.run(vlanSetupCommand(more), 30_000);
      if (r.status !== 0) throw this.m.error(`cannot configure the NICs of vlans ${more.map((n) => n.vlan).join(", ")} (exit code ${r.status})`);
    }
    return reply;
  }

  /** This run's identity for a guest that booted with the generic one (snapshot boots). */
  async personalize(restored: boolean): Promise<number | undefined> {
    return this.identityApplied(await this.m.shell()!.run(this.identityCommand(restored), 30_000));
  }

  /** The command that gives this guest its identity (bench/vm can ask for the old, one-program-a-fact way).
   *  `prepared`: run in the restored shell itself, with what it prepared before its snapshot. */
  identityCommand(restored: boolean, prepared = false): string {
    return identityCommand(this.m.name, this.m.net, restored, this.m.identityByPrograms, prepared);
  }

  /** The identity command's reply: how long the guest waited for its CRNG's reseed. */
  identityApplied(r: ShellReply): number | undefined {
    if (r.status !== 0) throw this.m.error(`cannot give the guest its identity after a snapshot boot (exit code ${r.status})`);
    return reseedWaitMs(r.stdout.toString());
  }

  /** The guest reset itself (allowReboot): its old shell is gone, a new one will come up
   *  on the same virtconsole; commands wait for it (NixOS reconnects the same way). */
  onGuestReset(): void {
    const shell = this.m.shell();
    if (this.reconnecting || !shell) return;
    shell.detach(new ConnectionLostError(this.m.name, "the guest rebooted"));
    this.m.setShell(undefined);
    this.m.log("the guest rebooted: waiting for its backdoor shell");
    // A snapshot-booted guest's kernel command line has the generic identity: give it its own again.
    this.reconnecting = this.connect(this.identityByShell)
      .then(() => (this.identityByShell ? this.personalize(false) : undefined))
      .then(() => this.m.log("backdoor shell ready (after reboot)"))
      .finally(() => (this.reconnecting = undefined));
    this.reconnecting.catch((e: Error) => this.m.log(`no backdoor shell after the reboot: ${e.message}`));
  }

  /** Stop listening (the start's QEMU is gone or going). */
  async close(): Promise<void> {
    await this.listener?.close();
  }
}
