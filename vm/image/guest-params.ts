// The kernel command line of haltpoint's default guest image: the fixed part
// (DEFAULT_APPEND) and the per-machine `hp.*` parameters that guest-init.sh reads.

/**
 * Recommended kernel append line for the default image.
 * - console=ttyS0: kernel messages and the backdoor bash's stderr go to the serial log.
 * - panic=-1: reboot at once on a panic; QEMU runs with -no-reboot, so a panicking
 *   guest ends its QEMU instead of hanging until the boot timeout.
 * - quiet: printing the ~300 boot lines through the emulated UART costs time under TCG.
 * Further flags (mitigations=off, tsc=reliable, i8042.noaux, lsm=…, nokaslr) were
 * measured and changed nothing measurable (boot ≈ 2.2 s to the marker either way).
 */
export const DEFAULT_APPEND = "console=ttyS0 panic=-1 quiet";

export interface GuestParams {
  /** hp.hostname: the guest's hostname (default "haltpoint"). */
  hostname?: string;
  /** hp.ip: ADDR/PREFIX for eth1, the NIC on a virtual network between guests. */
  ip?: string;
  /** hp.hosts: extra /etc/hosts entries, name → address. */
  hosts?: Record<string, string>;
  /** hp.authorized_key: one authorized_keys line for root (e.g. an ssh public key). */
  authorizedKey?: string;
}

// One word each on the command line: a space would split a parameter.
const WORD = /^[^\s,:]+$/;

function checkWord(what: string, value: string): string {
  if (!WORD.test(value)) throw new Error(`guest ${what} ${JSON.stringify(value)} may not contain spaces, ',' or ':'`);
  return value;
}

/** The `hp.*` kernel parameters for one machine, space separated (may be empty). */
export function guestKernelParams(p: GuestParams): string {
  const words: string[] = [];
  if (p.hostname !== undefined) words.push(`hp.hostname=${checkWord("hostname", p.hostname)}`);
  if (p.ip !== undefined) {
    if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(p.ip)) throw new Error(`guest ip ${JSON.stringify(p.ip)} is not ADDR/PREFIX`);
    words.push(`hp.ip=${p.ip}`);
  }
  const hosts = Object.entries(p.hosts ?? {});
  if (hosts.length > 0) {
    const list = hosts.map(([name, addr]) => `${checkWord("host name", name)}:${checkWord("host address", addr)}`);
    words.push(`hp.hosts=${list.join(",")}`);
  }
  if (p.authorizedKey !== undefined) {
    const line = p.authorizedKey.trim();
    if (line.includes("\n")) throw new Error("guest authorizedKey must be a single authorized_keys line");
    words.push(`hp.authorized_key=${Buffer.from(line + "\n").toString("base64")}`);
  }
  return words.join(" ");
}

/** x86's COMMAND_LINE_SIZE: the kernel silently truncates a longer command line. */
export const MAX_APPEND_BYTES = 2047;

/** DEFAULT_APPEND plus the machine's parameters plus anything extra the test asked for. */
export function guestAppend(p: GuestParams, extra?: string): string {
  const line = [DEFAULT_APPEND, guestKernelParams(p), extra ?? ""].filter((s) => s.trim() !== "").join(" ");
  const bytes = Buffer.byteLength(line);
  if (bytes > MAX_APPEND_BYTES) {
    throw new Error(`kernel command line is ${bytes} bytes, over the ${MAX_APPEND_BYTES}-byte limit (use a shorter key, e.g. ed25519)`);
  }
  return line;
}
