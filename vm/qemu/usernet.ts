import { readdirSync, readFileSync, readlinkSync } from "node:fs";

// QEMU user networking (slirp) as seen from the host: what `info usernet` reports, and
// which of its connections is ours.
//
// Why: a host-side connection to a `hostfwd` port is accepted by the host kernel before
// slirp even tries the guest, so a successful connect() says nothing about the guest port.
// slirp then sends a SYN to the guest; a closed guest port answers RST and slirp closes our
// connection. To answer a hybrid-vsock `CONNECT <port>` with OK only when the guest really
// accepted (as vhost-device-vsock does), we find slirp's socket for our connection (its fd
// in QEMU, from /proc) and watch that row of `info usernet` leave SYN_SENT.

export interface UsernetRow {
  proto: string;
  /** HOST_FORWARD, SYN_SENT, ESTABLISHED, … */
  state: string;
  fd: number;
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
}

/**
 * Parse `info usernet`:
 *   Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
 *   TCP[HOST_FORWARD]  80       127.0.0.1 39707       10.0.2.15    22     0     0
 *   TCP[SYN_SENT]      82       127.0.0.1 39707       10.0.2.15    22     0     0
 */
export function parseUsernet(text: string): UsernetRow[] {
  const rows: UsernetRow[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*(\w+)\[([^\]]+)\]\s+(-?\d+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)/.exec(line);
    if (!m) continue;
    rows.push({ proto: m[1]!, state: m[2]!, fd: Number(m[3]), srcAddr: m[4]!, srcPort: Number(m[5]), dstAddr: m[6]!, dstPort: Number(m[7]) });
  }
  return rows;
}

/** The host port of the one HOST_FORWARD row in `after` that is not in `before`, to `guestPort`. */
export function newForwardPort(before: UsernetRow[], after: UsernetRow[], guestPort: number): number | undefined {
  const had = new Set(before.filter((r) => r.state === "HOST_FORWARD").map((r) => `${r.srcAddr}:${r.srcPort}`));
  const added = after.filter((r) => r.state === "HOST_FORWARD" && r.dstPort === guestPort && !had.has(`${r.srcAddr}:${r.srcPort}`));
  return added.length === 1 ? added[0]!.srcPort : undefined;
}

/** "0100007F:1F90" (little-endian IPv4, hex port) → ["127.0.0.1", 8080]. */
function parseProcAddr(s: string): [string, number] {
  const [hexAddr, hexPort] = s.split(":") as [string, string];
  const n = parseInt(hexAddr, 16);
  return [[n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join("."), parseInt(hexPort, 16)];
}

/** The inode of the host socket 127.0.0.1:localPort ↔ 127.0.0.1:remotePort (IPv4), if any. */
export function socketInode(localPort: number, remotePort: number, table = "/proc/net/tcp"): number | undefined {
  let text: string;
  try {
    text = readFileSync(table, "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [la, lp] = parseProcAddr(f[1]!);
    const [, rp] = parseProcAddr(f[2]!);
    if (la === "127.0.0.1" && lp === localPort && rp === remotePort) {
      const inode = Number(f[9]);
      return inode > 0 ? inode : undefined; // 0: still in the accept queue
    }
  }
  return undefined;
}

/** Which fd of one of `pids` is the socket with `inode`. */
export function fdOfSocket(pids: number[], inode: number): number | undefined {
  const want = `socket:[${inode}]`;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === want) return Number(fd);
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return undefined;
}
