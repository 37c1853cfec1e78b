import { connect, type Socket } from "node:net";

// The hybrid vsock handshake, as Firecracker, cloud-hypervisor and vhost-device-vsock speak
// it on their host-side UNIX socket, and as systemd-ssh-proxy (`ssh vsock-mux/<path>`)
// expects it:
//
//   client → server   CONNECT <port>\n
//   server → client   OK <n>\n          (then the bytes of the connection, both ways)
//
// On failure (no such port, nobody listening, a malformed request) the server closes the
// connection without writing anything: that is what Firecracker and vhost-device-vsock do,
// and what systemd-ssh-proxy reports as "Port <port> on <path> is not open".
//
// haltpoint adds one thing: a connection whose first bytes cannot be `CONNECT ` (an SSH
// client's banner through a plain `ProxyCommand=socat - UNIX-CONNECT:<path>`) is "raw":
// it goes to port 22, with the bytes already read replayed first, and gets no OK line.
//
// `<n>` is the host side's number for the connection (Firecracker's local port). It is
// kept ≤ 65535: systemd-ssh-proxy reads the answer into a buffer the size of
// "OK 65535\n" and a longer line would be handed to ssh as if it were the SSH banner.

export const CONNECT_PREFIX = Buffer.from("CONNECT ");
const OK_PREFIX = Buffer.from("OK ");
/** "CONNECT 4294967295\r\n" is 20 bytes; anything much longer is not a request. */
export const MAX_REQUEST_BYTES = 64;
/** Where a raw connection goes. */
export const RAW_PORT = 22;
/** vsock ports are 32-bit. */
export const MAX_VSOCK_PORT = 0xffff_ffff;

export type Handshake =
  /** `CONNECT <port>\n`; `rest` is whatever the client sent after the line. */
  | { kind: "connect"; port: number; rest: Buffer }
  /** Anything else: port 22, `replay` is what was read while deciding. */
  | { kind: "raw"; port: number; replay: Buffer }
  /** A `CONNECT` that is not a valid request: close without an answer. */
  | { kind: "invalid"; reason: string };

/**
 * Decides what a connection asks for from its first bytes, fed as they arrive. `push`
 * returns undefined while it cannot tell yet.
 */
export class HandshakeParser {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Handshake | undefined {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const n = Math.min(this.buf.length, CONNECT_PREFIX.length);
    if (!this.buf.subarray(0, n).equals(CONNECT_PREFIX.subarray(0, n))) return { kind: "raw", port: RAW_PORT, replay: this.buf };
    if (this.buf.length < CONNECT_PREFIX.length) return undefined;
    const nl = this.buf.indexOf(0x0a);
    if (nl < 0) {
      return this.buf.length > MAX_REQUEST_BYTES ? { kind: "invalid", reason: `no end of line within ${MAX_REQUEST_BYTES} bytes` } : undefined;
    }
    if (nl > MAX_REQUEST_BYTES) return { kind: "invalid", reason: `request line longer than ${MAX_REQUEST_BYTES} bytes` };
    const arg = this.buf.subarray(CONNECT_PREFIX.length, nl).toString("latin1").replace(/\r$/, "");
    const port = /^\d{1,10}$/.test(arg) ? Number(arg) : NaN;
    if (!(port <= MAX_VSOCK_PORT)) return { kind: "invalid", reason: `bad port ${JSON.stringify(arg.slice(0, 20))}` };
    return { kind: "connect", port, rest: this.buf.subarray(nl + 1) };
  }

  /** Bytes seen so far. */
  get pending(): number {
    return this.buf.length;
  }
}

/** The server's answer once the connection to `port` stands. */
export function okLine(n: number): Buffer {
  return Buffer.from(`OK ${n}\n`);
}

export interface ReadHandshakeOptions {
  /**
   * A client that says nothing for this long is taken to be raw (an SSH client that waits
   * for the server's banner first). Default 500 ms.
   */
  silenceMs?: number;
  /** A request that has begun must be complete within this long. Default 5 s (systemd-ssh-proxy's own header timeout). */
  timeoutMs?: number;
}

/**
 * Read a connection's first bytes until it is clear what it asks for. The socket is left
 * paused with no data listener: the caller writes `rest`/`replay` on and pipes the rest.
 */
export function readHandshake(socket: Socket, o: ReadHandshakeOptions = {}): Promise<Handshake> {
  const parser = new HandshakeParser();
  return new Promise((resolve) => {
    let settled = false;
    const settle = (h: Handshake): void => {
      if (settled) return;
      settled = true;
      clearTimeout(silence);
      clearTimeout(deadline);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("error", onEnd);
      socket.off("close", onEnd);
      socket.pause();
      resolve(h);
    };
    const onData = (chunk: Buffer): void => {
      clearTimeout(silence);
      const h = parser.push(chunk);
      if (h) settle(h);
    };
    const onEnd = (): void => settle({ kind: "invalid", reason: parser.pending ? "closed in the middle of a request" : "closed without a request" });
    // A timer decides only after one turn of the poll phase: when this thread was stalled
    // (a loaded host, a long synchronous step), libuv runs due timers before reading what
    // the client sent meanwhile, and a CONNECT already in the buffer would be taken for
    // silence (and replayed to the SSH server as a raw client's first bytes).
    const afterPendingReads = (decide: () => void) => () => setImmediate(() => settled || decide());
    const silence = setTimeout(
      afterPendingReads(() => parser.pending || settle({ kind: "raw", port: RAW_PORT, replay: Buffer.alloc(0) })),
      o.silenceMs ?? 500,
    );
    const deadline = setTimeout(afterPendingReads(() => settle({ kind: "invalid", reason: "incomplete request" })), o.timeoutMs ?? 5000);
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("error", onEnd);
    socket.on("close", onEnd);
  });
}

/** Why a client-side handshake failed; `code` as a socket error would have it. */
export class VsockMuxError extends Error {
  override name = "VsockMuxError";
  constructor(
    message: string,
    readonly code: "ECONNREFUSED" | "EPROTO" | "ETIMEDOUT" | string,
  ) {
    super(message);
  }
}

/**
 * The client side: connect to a hybrid vsock socket, ask for `port`, and resolve with the
 * socket once the server said OK, positioned right after the OK line and paused (resume()
 * or pipe() it). A server that closes
 * without an answer means the port is not open (ECONNREFUSED), as systemd-ssh-proxy reads it.
 */
export function connectVsockMux(path: string, port: number, o: { timeoutMs?: number } = {}): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path, allowHalfOpen: true });
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new VsockMuxError(`${path}: no answer to CONNECT ${port} within ${(o.timeoutMs ?? 10_000) / 1000} s`, "ETIMEDOUT")), o.timeoutMs ?? 10_000);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        const k = Math.min(buf.length, OK_PREFIX.length);
        if (buf.length > MAX_REQUEST_BYTES || !buf.subarray(0, k).equals(OK_PREFIX.subarray(0, k))) {
          fail(new VsockMuxError(`${path}: unexpected answer to CONNECT ${port}: ${JSON.stringify(buf.toString("latin1").slice(0, 40))}`, "EPROTO"));
        }
        return;
      }
      const line = buf.subarray(0, nl).toString("latin1");
      if (!/^OK \d+\r?$/.test(line)) return fail(new VsockMuxError(`${path}: unexpected answer to CONNECT ${port}: ${JSON.stringify(line.slice(0, 40))}`, "EPROTO"));
      settled = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("error", onError);
      socket.pause();
      const rest = buf.subarray(nl + 1);
      if (rest.length) socket.unshift(rest);
      resolve(socket);
    };
    const onEnd = (): void => fail(new VsockMuxError(`${path}: port ${port} is not open (the connection was closed without an answer)`, "ECONNREFUSED"));
    const onError = (e: NodeJS.ErrnoException): void => fail(new VsockMuxError(`${path}: ${e.code === "ENOENT" ? "no such socket" : e.code === "ECONNREFUSED" ? "nobody listens on this socket" : e.message}`, e.code ?? "EIO"));
    socket.on("connect", () => socket.write(`CONNECT ${port}\n`));
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("error", onError);
  });
}
