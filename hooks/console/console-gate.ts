import { timingSafeEqual } from "node:crypto";
import type { Socket } from "node:net";
import { peerUid } from "./peer-uid.ts";
import { TelnetDecoder } from "./telnet.ts";

// Who may use a breakpoint console. It evaluates JavaScript as the user running haltpoint
// (often root in CI), so a connection is served only when the kernel says its socket belongs
// to that uid or to root (hooks/console/peer-uid.ts). A peer on another host (a `--debug-bind` to a
// non-loopback address) has no socket here to ask about, so a console beyond loopback asks
// every client for its token first, a secret printed once to the owner (a local client must
// also pass the uid check). Nothing the client sends reaches the REPL before the verdict.

export interface ConsoleGateOptions {
  /** The uid served besides root: the orchestrator's. */
  ownerUid: number;
  /** Set when the console listens beyond loopback: what a peer from another host must send first. */
  token?: string;
}

export type GateVerdict = { ok: true; head: Buffer } | { ok: false; reason: string };

/** Longest token line read before giving up on a client. */
const MAX_TOKEN_LINE = 256;

/** Decide on `socket` (paused, nothing read yet). On success, `head` is what it sent after the token. */
export async function checkConsolePeer(socket: Socket, o: ConsoleGateOptions): Promise<GateVerdict> {
  const ends = {
    localAddress: socket.localAddress ?? "",
    localPort: socket.localPort ?? 0,
    remoteAddress: socket.remoteAddress ?? "",
    remotePort: socket.remotePort ?? 0,
  };
  const uid = await peerUid(ends);
  if (uid !== undefined && uid !== o.ownerUid && uid !== 0) {
    return { ok: false, reason: `uid ${uid} may not use this console: it runs code as uid ${o.ownerUid}, and only that user and root are served` };
  }
  // With a token (a console beyond loopback) everyone sends it, local owner included: one rule.
  if (o.token) return readToken(socket, o.token);
  if (uid === undefined) {
    return { ok: false, reason: `cannot tell which user connected from ${ends.remoteAddress}:${ends.remotePort} (no such socket in /proc/net/tcp)` };
  }
  return { ok: true, head: Buffer.alloc(0) };
}

/** Ask for the token and compare the first line the client sends with it. */
function readToken(socket: Socket, token: string): Promise<GateVerdict> {
  socket.write("haltpoint console token: ");
  const telnet = new TelnetDecoder({ crlf: true });
  let line = Buffer.alloc(0);
  return new Promise<GateVerdict>((resolve) => {
    const finish = (v: GateVerdict): void => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.pause();
      resolve(v);
    };
    const onData = (chunk: Buffer): void => {
      line = Buffer.concat([line, telnet.decode(chunk).data]);
      const nl = line.indexOf(10);
      if (nl < 0) {
        if (line.length > MAX_TOKEN_LINE) finish({ ok: false, reason: "no token line" });
        return;
      }
      const given = Buffer.from(line.subarray(0, nl).toString("utf8").trim());
      const want = Buffer.from(token);
      const same = given.length === want.length && timingSafeEqual(given, want);
      finish(same ? { ok: true, head: line.subarray(nl + 1) } : { ok: false, reason: "wrong console token" });
    };
    const onEnd = (): void => finish({ ok: false, reason: "closed before sending the token" });
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
    socket.resume();
  });
}

/** Whether `host` is a loopback address (a console there is reached from this host only). */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || /^127\./.test(host) || host === "::1" || /^::ffff:127\./i.test(host);
}
