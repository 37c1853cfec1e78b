// The Machine API shared by every backend: camelCase of the NixOS test driver's,
// with the same semantics and defaults (docs/test-api.md).

export type BackendName = "local" | "qemu";

/** Options of one node in `defineTest({ nodes })`. */
export interface NodeOptions {
  /** Backend of this machine; default: the CLI's `--backend` (itself default "local"). */
  backend?: BackendName;
  /** Guest memory in MiB (qemu; counted by admission for every backend). Default 512 for qemu, 64 for local. */
  memory?: number;
  /** Virtual CPUs (qemu; counted by admission). Default 1. */
  cores?: number;
  /** qemu: kernel image; default haltpoint's own guest image. */
  kernel?: string;
  /** qemu: initrd; default haltpoint's own guest image. */
  initrd?: string;
  /** qemu: extra kernel command line. */
  append?: string;
  /** qemu: boot a disk image instead of kernel + initrd. */
  diskImage?: string;
  /** qemu: a NixOS-style `run-<name>-vm` start script (honours QEMU_OPTS). */
  startScript?: string;
  /** Seconds until a guest that never opens its backdoor fails to boot. Default 300. */
  bootTimeout?: number;
  /** qemu: extra command-line arguments. */
  qemuArgs?: string[];
  /** qemu, haltpoint's own image: start from a saved snapshot of an identical machine
   *  instead of booting (default true; the run's --no-snapshot-boot turns it off for all). */
  snapshotBoot?: boolean;
  /** qemu: a Debian 12 guest with systemd as PID 1 instead of haltpoint's own image: `"debian"`
   *  (the base system: systemd, udev, dbus, sshd, iproute2, procps, netcat) or
   *  `{ packages: ["lighttpd", …], files: {…}, setup: "…" }`, installed and enabled as Debian does; implies backend
   *  "qemu" when the node names none. Built once per
   *  package list (as root; `haltpoint image build --debian PKGS` builds it ahead) and cached. */
  image?: DebianImageOption;
  /** qemu: the virtual networks this machine is on (NixOS `virtualisation.vlans`), 1–255;
   *  only machines sharing a vlan reach each other. Default [1]: every machine on one. */
  vlans?: number[];
}

/** Node option `image`: a Debian systemd guest, its configuration baked into the image. */
export type DebianImageOption =
  | "debian"
  | {
      /** Debian packages installed (and enabled) as Debian does. */
      packages?: string[];
      /** Absolute guest path → content, written into the image after the packages (mode 0644,
       *  0755 when the content starts with `#!`; parent directories made as needed). */
      files?: Record<string, string>;
      /** A shell script run as root by bash (`-e`) in the image's chroot at build time, after
       *  the files: users, config, `systemctl enable/disable/mask`. */
      setup?: string;
    };

export interface ExecuteOptions {
  /** Seconds; the command is killed and the call fails after it. Default 900. */
  timeout?: number;
  /** "utf8" (default) returns stdout as a string, "buffer" the exact bytes. */
  encoding?: "utf8" | "buffer";
  /** NixOS `check_return`: false returns status -1 and does not fail when the machine goes
   *  away during the command (for commands that power off or reboot it). Default true. */
  checkReturn?: boolean;
  /** NixOS `check_output`: false sends the command and returns `{status: -2, stdout: ""}`
   *  at once, without waiting for it. Default true. */
  checkOutput?: boolean;
}

/** Options of `succeed`/`fail`, given as their last argument. */
export interface CommandOptions {
  /** Seconds each command may take. Default 900. */
  timeout?: number;
}

export interface StartOptions {
  /** qemu: a guest reboot resets the machine and the backdoor reconnects, instead of
   *  ending QEMU (NixOS `allow_reboot`). Default false. */
  allowReboot?: boolean;
}

/** A QMP event as QEMU sent it. */
export interface QmpEventMessage {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface ExecuteResult<T extends string | Buffer = string> {
  status: number;
  stdout: T;
}

export interface WaitOptions {
  /** Seconds. Default 900. */
  timeout?: number;
}

/** Options of the systemd calls. */
export interface SystemdOptions {
  /** Run as this user's `systemctl --user` (in a login shell of the user, as NixOS does). */
  user?: string;
}

export interface UnitWaitOptions extends WaitOptions, SystemdOptions {}

export interface PortOptions extends WaitOptions {
  /** Address to probe, default "127.0.0.1"/"localhost" inside the machine. */
  addr?: string;
}

export type MachineState = "created" | "starting" | "running" | "frozen" | "stopped" | "crashed";

/** What every machine has, whatever its backend (a `local` sandbox has exactly this). */
export interface Machine {
  readonly name: string;
  readonly backend: BackendName;
  readonly state: MachineState;
  start(opts?: StartOptions): Promise<void>;
  shutdown(): Promise<void>;
  crash(): Promise<void>;
  execute(cmd: string, opts?: ExecuteOptions & { encoding?: "utf8" }): Promise<ExecuteResult<string>>;
  execute(cmd: string, opts: ExecuteOptions & { encoding: "buffer" }): Promise<ExecuteResult<Buffer>>;
  succeed(...cmds: Array<string | CommandOptions>): Promise<string>;
  fail(...cmds: Array<string | CommandOptions>): Promise<string>;
  /** Sleep in guest time (a frozen guest's sleep does not advance). */
  sleep(seconds: number): Promise<void>;
  waitUntilSucceeds(cmd: string, opts?: WaitOptions): Promise<string>;
  waitUntilFails(cmd: string, opts?: WaitOptions): Promise<string>;
  waitForFile(path: string, opts?: WaitOptions): Promise<void>;
  waitForOpenPort(port: number, opts?: PortOptions): Promise<void>;
  waitForClosedPort(port: number, opts?: PortOptions): Promise<void>;
  waitForConsoleText(regex: RegExp | string, opts?: WaitOptions): Promise<string>;
  copyFromMachine(src: string, targetDir?: string): Promise<string>;
  copyToMachine(src: string, dst: string): Promise<void>;
  /** NixOS `copy_from_host`: copyToMachine under the name a ported test calls. */
  copyFromHost(src: string, dst: string): Promise<void>;
  /** NixOS `copy_from_host_via_shell`: copyToMachine, which always goes through the backdoor shell (no shared folder). */
  copyFromHostViaShell(src: string, dst: string): Promise<void>;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  consoleLog(): string;
  /** NixOS `get_console_log`: consoleLog() under the name a ported test calls. */
  getConsoleLog(): string;
  getTtyText(tty: number | string): Promise<string>;
  /** NixOS `dump_tty_contents`: what `tty` shows, into the run's log (NixOS: the guest's journal), for debugging. */
  dumpTtyContents(tty: number | string): Promise<void>;
  waitUntilTtyMatches(tty: number | string, regex: RegExp | string, opts?: WaitOptions): Promise<void>;
}

/** What a QEMU guest has besides (the `qemu` backend, Debian guests): systemd, its screen and
 *  keyboard, its monitor and QMP events, its network, a reboot. A node whose backend comes
 *  from the command line is typed as this; on a local run these calls throw NotSupportedError. */
export interface VmMachine extends Machine {
  /**
   * Wait until a systemd unit is active (NixOS `wait_for_unit`). Fails at once, with the unit's
   * state and its last journal lines, when the unit is `failed`, or `inactive` with no job
   * pending; a clear error on a machine without systemd. Default timeout 900 s.
   */
  waitForUnit(unit: string, opts?: UnitWaitOptions): Promise<void>;
  /** Run `systemctl ARGS` (a string as the shell reads it, or a list quoted word by word), as
   *  `systemctl --user` of `user` when given; the result as `execute` returns it (NixOS `systemctl`). */
  systemctl(args: string | string[], opts?: SystemdOptions): Promise<ExecuteResult<string>>;
  /** `systemctl start UNIT` (NixOS `start_job`); the result as `execute` returns it. */
  startJob(unit: string, opts?: SystemdOptions): Promise<ExecuteResult<string>>;
  /** `systemctl stop UNIT` (NixOS `stop_job`); the result as `execute` returns it. */
  stopJob(unit: string, opts?: SystemdOptions): Promise<ExecuteResult<string>>;
  /** Every property `systemctl show UNIT` prints, name → value (NixOS `get_unit_info`). */
  getUnitInfo(unit: string, opts?: SystemdOptions): Promise<Record<string, string>>;
  /** One property of a unit, e.g. `getUnitProperty("sshd.service", "MainPID")` (NixOS `get_unit_property`). */
  getUnitProperty(unit: string, property: string, opts?: SystemdOptions): Promise<string>;
  /** Fails unless the unit's ActiveState is `state` now (default "active"; NixOS `require_unit_state`). */
  requireUnitState(unit: string, state?: string, opts?: SystemdOptions): Promise<void>;
  /** Wait until something listens on a UNIX socket (`nc -U`; NixOS `wait_for_open_unix_socket`). */
  waitForOpenUnixSocket(path: string, opts?: WaitOptions & { isDatagram?: boolean }): Promise<void>;
  /** The systemd journal, of one unit when given (`journalctl --no-pager [-u UNIT] [-n lines]`). */
  journal(unit?: string, opts?: SystemdOptions & { lines?: number }): Promise<string>;
  screenshot(name: string): Promise<string>;
  sendMonitorCommand(cmd: string): Promise<string>;
  forwardPort(hostPort: number, guestPort: number): Promise<void>;
  block(): Promise<void>;
  unblock(): Promise<void>;
  waitForQmpEvent(filter: (e: QmpEventMessage) => boolean, opts?: WaitOptions): Promise<QmpEventMessage>;
  sendKey(keys: string, opts?: { delay?: number }): Promise<void>;
  sendChars(text: string, opts?: { delay?: number }): Promise<void>;
  sendConsole(text: string): Promise<void>;
  getScreenText(): Promise<string>;
  /**
   * Several readings of what the screen shows now, from one screendump (NixOS
   * `get_screen_text_variants`): as getScreenText reads it, as one column of lines, and gray,
   * inverted and doubled in size. For a screen one reading gets wrong: match against each.
   */
  getScreenTextVariants(): Promise<string[]>;
  waitForText(regex: RegExp | string, opts?: WaitOptions): Promise<string>;
  reboot(): Promise<void>;
  waitForShutdown(opts?: WaitOptions): Promise<void>;
}
