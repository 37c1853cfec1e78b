// The qemu-system-x86_64 command line for one haltpoint machine. Pure: no I/O, so the
// exact argv is testable and can be logged.

export const QEMU_BINARY = "qemu-system-x86_64";

/** The name of the virtio-serial port the guest's init reads kill requests from. */
export const KILL_PORT_NAME = "org.haltpoint.kill";
/**
 * The virtio-serial port haltpoint's own image runs its backdoor shell on. Not a
 * virtconsole (hvc0): QEMU drops what a virtconsole writes when the host's socket is full
 * (hw/char/virtio-console.c flush_buf: only non-console ports are throttled), which lost
 * base64 lines of large outputs whenever the worker was slow to read; a plain port waits.
 */
export const SHELL_PORT_NAME = "org.haltpoint.shell";

/** Ids on the command line that QMP/HMP commands refer to. */
export const QEMU_IDS = {
  /** `-netdev user` id: `hostfwd_add net0 tcp:127.0.0.1:H-:G` adds a forward at run time. */
  userNetdev: "net0",
  /** The user-network NIC (guest eth0): `set_link nic0 off` blocks the machine's network. */
  userNic: "nic0",
  vnetNetdev: "vnet0",
  /** The virtual-network NIC (guest eth1). */
  vnetNic: "vnic0",
  shellChardev: "shell",
  killChardev: "hpkill",
  serialChardev: "serial0",
  qmpChardev: "qmp",
} as const;

export type SerialOutput =
  /** QEMU connects to a UNIX socket the caller listens on (and may also tee to logFile). */
  | { type: "socket"; path: string; logFile?: string }
  /** QEMU writes the serial console to a file (created or truncated). */
  | { type: "file"; path: string }
  /** No serial port at all. */
  | { type: "none" };

export interface DiskImage {
  path: string;
  /** Default "qcow2" when the path ends in .qcow2, else "raw". */
  format?: "raw" | "qcow2";
  /** Writes go to a temporary overlay, the image file stays untouched. Default true. */
  snapshot?: boolean;
  /**
   * A qcow2's backing file, given to QEMU explicitly rather than taken from the image's header
   * (a revived bundle's disk: the header is not trusted to name a file). Plain files only.
   */
  backing?: string;
}

export interface VirtualNetwork {
  /** A UNIX stream socket the host listens on (the hub); QEMU connects as a client. */
  socketPath: string;
  /** The NIC's MAC address, e.g. "52:54:00:12:00:05". */
  mac: string;
}

export interface QemuArgvOptions {
  /** Shown in `ps` and window titles: `-name`. */
  name?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** A disk as a virtio block device; boots from it when no kernel is given. */
  diskImage?: string | DiskImage;
  memoryMiB: number;
  cores: number;
  accel: "kvm" | "tcg";
  /** CPU model; default "host" under KVM, QEMU's default (qemu64) under TCG. */
  cpu?: string;
  /** QEMU listens here for QMP (server=on,wait=off): connect after spawning. */
  qmpSocket: string;
  /**
   * The backdoor shell: a UNIX socket the HOST listens on before QEMU starts; QEMU
   * connects to it and attaches it to the guest's /dev/hvc0 (virtconsole), or with
   * `shellPort: "named"` to the virtio-serial port SHELL_PORT_NAME.
   */
  shellSocket: string;
  /** "console" (default): hvc0, what NixOS guests and other images read; "named": haltpoint's image. */
  shellPort?: "console" | "named";
  /**
   * The kill port: QEMU listens here (server=on,wait=off) and passes what haltpoint writes
   * to a virtio-serial port the guest knows by name (vm/qemu/kill-port.ts). Optional: a
   * machine without it cannot stop a command that ran past its timeout.
   */
  killSocket?: string;
  serial: SerialOutput;
  /** Forwards from 127.0.0.1:hostPort to the guest's guestPort over user networking. */
  userNetForwards?: Array<{ hostPort: number; guestPort: number }>;
  /** A second NIC on a host-run hub (`-netdev stream`, see vnet frame format below). */
  vnet?: VirtualNetwork;
  /** NICs on further hubs (node option `vlans`), after `vnet`: eth2, eth3, … */
  moreVnets?: VirtualNetwork[];
  /** Appended last, so they can override anything above. */
  extraArgs?: string[];
  /** A guest reboot resets the machine instead of ending QEMU (no -no-reboot). */
  allowReboot?: boolean;
}

/**
 * QEMU option values are comma separated; a literal comma is written as ",,".
 * Paths with commas are legal and would otherwise be split into bogus options.
 */
export function qemuOptValue(s: string): string {
  return s.replaceAll(",", ",,");
}

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i;

/** sun_path holds 108 bytes including the NUL; QEMU fails with a vague error past it. */
export const MAX_UNIX_SOCKET_PATH = 107;

function checkSocketPath(path: string, what: string): string {
  const n = Buffer.byteLength(path);
  if (n > MAX_UNIX_SOCKET_PATH) throw new Error(`${what} socket path is ${n} bytes, over the ${MAX_UNIX_SOCKET_PATH}-byte limit: ${path}`);
  return path;
}

function checkPort(p: number, what: string): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`invalid ${what} ${p}`);
  return p;
}

function diskArgs(disk: string | DiskImage): string[] {
  const d = typeof disk === "string" ? { path: disk } : disk;
  const format = d.format ?? (d.path.endsWith(".qcow2") ? "qcow2" : "raw");
  const snapshot = d.snapshot ?? true;
  const backing = d.backing ? `,file.driver=file,backing.driver=qcow2,backing.file.driver=file,backing.file.filename=${qemuOptValue(d.backing)}` : "";
  return ["-drive", `file=${qemuOptValue(d.path)},if=virtio,format=${format}${snapshot ? ",snapshot=on" : ""}${backing}`];
}

function serialArgs(serial: SerialOutput): string[] {
  const id = QEMU_IDS.serialChardev;
  switch (serial.type) {
    case "none":
      return [];
    case "file":
      return ["-chardev", `file,id=${id},path=${qemuOptValue(serial.path)}`, "-serial", `chardev:${id}`];
    case "socket": {
      const log = serial.logFile ? `,logfile=${qemuOptValue(serial.logFile)}` : "";
      return ["-chardev", `socket,id=${id},path=${qemuOptValue(checkSocketPath(serial.path, "serial"))}${log}`, "-serial", `chardev:${id}`];
    }
  }
}

/**
 * How haltpoint reaches a machine: QMP (QEMU listens), the serial console and the
 * backdoor shell on a virtconsole (haltpoint listens). Also what a NixOS-style start
 * script gets through QEMU_OPTS.
 */
export function controlArgs(o: Pick<QemuArgvOptions, "qmpSocket" | "shellSocket" | "shellPort" | "killSocket" | "serial">): string[] {
  const kill = o.killSocket
    ? [
        "-chardev", `socket,id=${QEMU_IDS.killChardev},path=${qemuOptValue(checkSocketPath(o.killSocket, "kill"))},server=on,wait=off`,
        "-device", `virtserialport,chardev=${QEMU_IDS.killChardev},name=${KILL_PORT_NAME}`,
      ]
    : [];
  return [
    "-chardev", `socket,id=${QEMU_IDS.qmpChardev},path=${qemuOptValue(checkSocketPath(o.qmpSocket, "QMP"))},server=on,wait=off`,
    "-mon", `chardev=${QEMU_IDS.qmpChardev},mode=control`,
    ...serialArgs(o.serial),
    // Backdoor shell: client socket (no server=on) → QEMU fails at once if nobody listens.
    "-chardev", `socket,id=${QEMU_IDS.shellChardev},path=${qemuOptValue(checkSocketPath(o.shellSocket, "shell"))}`,
    "-device", "virtio-serial",
    "-device", o.shellPort === "named" ? `virtserialport,chardev=${QEMU_IDS.shellChardev},name=${SHELL_PORT_NAME}` : `virtconsole,chardev=${QEMU_IDS.shellChardev}`,
    ...kill,
  ];
}

/**
 * Build the argv (without the binary) for one machine.
 *
 * Devices come in a fixed order so PCI slots, and thus guest interface names, are
 * stable: VGA (00:02), virtio-serial (00:03), user NIC → eth0 (00:04), vnet NIC → eth1
 * (00:05), then the disk.
 *
 * Virtual network frame format (QEMU 7.2 `-netdev stream`, UNIX socket, QEMU as client):
 * each Ethernet frame (no preamble, no FCS) is sent as a 4-byte big-endian length
 * followed by that many bytes, in both directions; the hub must frame what it forwards
 * the same way. (`-netdev socket,connect=` takes only host:port in 7.2, hence stream.)
 * QEMU 7.2 has no `reconnect` for stream netdevs: the hub must be listening before
 * QEMU starts, and if it closes the connection the NIC stays disconnected.
 */
export function buildQemuArgv(o: QemuArgvOptions): string[] {
  if (!o.kernel && !o.diskImage) throw new Error("a machine needs a kernel or a disk image");
  if ((o.initrd || o.append) && !o.kernel) throw new Error("initrd/append need a kernel");
  if (!Number.isInteger(o.memoryMiB) || o.memoryMiB < 16) throw new Error(`invalid memory size ${o.memoryMiB} MiB`);
  if (!Number.isInteger(o.cores) || o.cores < 1) throw new Error(`invalid core count ${o.cores}`);

  const argv: string[] = [];
  if (o.name) argv.push("-name", qemuOptValue(o.name));
  argv.push(
    // No default devices (monitor on stdio, parallel port, floppy, CD-ROM, NIC) and no
    // host-wide config files: everything the machine has is on this line.
    "-nodefaults",
    "-no-user-config",
    "-machine", "pc",
    // Under TCG MTTCG runs each vCPU in its own host thread (measured: 2 cores boot
    // ~0.15 s faster than thread=single; 1 core: no difference).
    "-accel", o.accel === "kvm" ? "kvm" : "tcg,thread=multi",
    "-m", String(o.memoryMiB),
    "-smp", String(o.cores),
  );
  const cpu = o.cpu ?? (o.accel === "kvm" ? "host" : undefined);
  if (cpu) argv.push("-cpu", cpu);
  // No window, but a VGA adapter so `screendump` has a screen to capture.
  argv.push("-display", "none", "-vga", "std");
  // A reboot (panic=-1, `reboot -f`) ends QEMU: a test sees the machine stop; with
  // start({allowReboot}) the guest resets instead (NixOS allow_reboot).
  if (!o.allowReboot) argv.push("-no-reboot");

  if (o.kernel) argv.push("-kernel", o.kernel);
  if (o.initrd) argv.push("-initrd", o.initrd);
  if (o.append) argv.push("-append", o.append);

  argv.push(...controlArgs(o));

  const fwds = (o.userNetForwards ?? []).map(
    (f) => `,hostfwd=tcp:127.0.0.1:${checkPort(f.hostPort, "host port")}-:${checkPort(f.guestPort, "guest port")}`,
  );
  argv.push("-netdev", `user,id=${QEMU_IDS.userNetdev}${fwds.join("")}`);
  argv.push("-device", `virtio-net-pci,netdev=${QEMU_IDS.userNetdev},id=${QEMU_IDS.userNic}`);

  if (o.vnet) {
    if (!MAC.test(o.vnet.mac)) throw new Error(`invalid MAC address ${JSON.stringify(o.vnet.mac)}`);
    argv.push("-netdev", `stream,id=${QEMU_IDS.vnetNetdev},server=off,addr.type=unix,addr.path=${qemuOptValue(checkSocketPath(o.vnet.socketPath, "vnet"))}`);
    argv.push("-device", `virtio-net-pci,netdev=${QEMU_IDS.vnetNetdev},id=${QEMU_IDS.vnetNic},mac=${o.vnet.mac}`);
    (o.moreVnets ?? []).forEach((v, i) => {
      if (!MAC.test(v.mac)) throw new Error(`invalid MAC address ${JSON.stringify(v.mac)}`);
      argv.push("-netdev", `stream,id=vnet${i + 1},server=off,addr.type=unix,addr.path=${qemuOptValue(checkSocketPath(v.socketPath, "vnet"))}`);
      argv.push("-device", `virtio-net-pci,netdev=vnet${i + 1},id=vnic${i + 1},mac=${v.mac}`);
    });
  }
  if (o.diskImage) argv.push(...diskArgs(o.diskImage));

  argv.push(...(o.extraArgs ?? []));
  return argv;
}
