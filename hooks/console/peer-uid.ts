import { readFile } from "node:fs/promises";
import { isIPv4 } from "node:net";

// Who is on the other end of a TCP connection accepted on this host: the owner uid of the
// peer's socket, read from /proc/net/tcp{,6} as identd does. A loopback client's socket is a
// row there whose local address is our remote one and whose remote address is our local one;
// its `uid` column is the uid that created the socket. A peer on another host has no row.
//
// Why not trust anything the client says: the breakpoint console evaluates JavaScript as the
// user running haltpoint, so who may connect must be decided from the kernel's view alone.

export interface TcpEnds {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

/** An address as the kernel writes it in /proc/net/tcp6: 4 little-endian 32-bit words. */
function procHex6(addr: string): string {
  const bytes = ipv6Bytes(addr);
  let out = "";
  for (let w = 0; w < 4; w++) {
    for (let b = 3; b >= 0; b--) out += bytes[w * 4 + b]!.toString(16).padStart(2, "0");
  }
  return out.toUpperCase();
}

/** An IPv4 address as /proc/net/tcp writes it: one little-endian 32-bit word. */
function procHex4(addr: string): string {
  return addr
    .split(".")
    .map((o) => Number(o).toString(16).padStart(2, "0"))
    .reverse()
    .join("")
    .toUpperCase();
}

function ipv6Bytes(addr: string): number[] {
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(addr);
  let text = addr.replace(/%.*$/, "");
  const tail: number[] = [];
  if (v4Tail) {
    tail.push(...v4Tail[1]!.split(".").map(Number));
    text = text.slice(0, -v4Tail[1]!.length);
    if (!text.endsWith("::")) text = text.slice(0, -1);
  }
  const [head, rest] = text.split("::") as [string, string | undefined];
  const words = (s: string): number[] => (s ? s.split(":").filter((x) => x !== "").map((x) => parseInt(x, 16)) : []);
  const h = words(head);
  const r = rest === undefined ? [] : words(rest);
  const want = 8 - (tail.length ? 2 : 0);
  const fill = rest === undefined ? [] : new Array<number>(want - h.length - r.length).fill(0);
  const all = [...h, ...fill, ...r].slice(0, want);
  const bytes = all.flatMap((w) => [w >> 8, w & 255]);
  return [...bytes, ...tail];
}

/** "127.0.0.1:4444" in the table's notation (address hex, port hex), for either table. */
function procEndpoint(addr: string, port: number, v6: boolean): string {
  const a = v6 ? procHex6(isIPv4(addr) ? `::ffff:${addr}` : addr) : procHex4(addr);
  return `${a}:${port.toString(16).padStart(4, "0").toUpperCase()}`;
}

/** The uid column of the row in `table` (text of /proc/net/tcp or tcp6) for the peer of `ends`. */
export function peerUidFromTable(table: string, ends: TcpEnds, v6: boolean): number | undefined {
  const mapped = (a: string): string => a.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");
  const remote = mapped(ends.remoteAddress);
  const local = mapped(ends.localAddress);
  if (!v6 && !(isIPv4(remote) && isIPv4(local))) return undefined;
  const peerLocal = procEndpoint(remote, ends.remotePort, v6);
  const peerRemote = procEndpoint(local, ends.localPort, v6);
  for (const line of table.split("\n")) {
    const f = line.trim().split(/\s+/);
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if (f.length < 10 || f[1] !== peerLocal || f[2] !== peerRemote) continue;
    // Inode 0: no process holds that socket any more. A client that connected, wrote and
    // closed at once is by now a time-wait entry, which the kernel prints with uid 0: taken at
    // its word it would pass for root. Such a peer is unknown (and refused), never root.
    if (f[9] === "0") return undefined;
    const uid = Number(f[7]);
    if (Number.isInteger(uid)) return uid;
  }
  return undefined;
}

/**
 * The uid owning the peer's socket of an accepted TCP connection, or undefined when the
 * peer is not on this host (or not in this network namespace), or its socket is closed. Looks in /proc/net/tcp, then
 * /proc/net/tcp6 (a v4 client of a dual-stack listener appears there, v4-mapped).
 */
export async function peerUid(ends: TcpEnds): Promise<number | undefined> {
  for (const [file, v6] of [
    ["/proc/net/tcp", false],
    ["/proc/net/tcp6", true],
  ] as const) {
    const text = await readFile(file, "utf8").catch(() => "");
    const uid = peerUidFromTable(text, ends, v6);
    if (uid !== undefined) return uid;
  }
  return undefined;
}
