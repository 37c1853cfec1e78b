import { chmod, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { okLine, readHandshake, type ReadHandshakeOptions } from "./vsock-mux.ts";

/** sun_path holds 108 bytes including the NUL. */
export const MAX_SOCKET_PATH = 107;

/** A target that takes the client socket over itself (an in-process SSH server). */
export interface Adopted {
  adopt(client: Socket): void;
}

/** What a backdoor socket bridges its connections to: one machine. */
export interface BridgeTarget {
  /**
   * Called first for every connection that asked for a port: resolve undefined to go on, or
   * a reason to refuse (the connection is then closed without an answer). This is where a
   * frozen machine is thawed (or not).
   */
  admit?(port: number): Promise<string | undefined>;
  /**
   * Reach `port` of the machine. Resolve once the other end has accepted, with a stream to
   * pipe the client to, or with an `Adopted` that takes the client socket itself (paused,
   * with any bytes already read put back: it must resume it); reject if the port does not
   * answer.
   */
  open(port: number): Promise<Duplex | Adopted>;
}

export interface BackdoorSocketOptions extends ReadHandshakeOptions {
  /** One line about a connection that failed or was refused (for the run's log). */
  log?(msg: string): void;
}

/**
 * A hybrid-vsock UNIX socket (see vsock-mux.ts) in front of one machine: every connection
 * runs the handshake, then gets its own bridge to the port it asked for. The socket file is
 * 0600; the directory it is in should be private too (permissions on a socket file are not
 * honoured everywhere).
 */
export class BackdoorSocket {
  private readonly live = new Set<Socket>();
  private readonly peers = new Set<Duplex>();
  private nextId = 1024;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly target: BridgeTarget,
    private readonly o: BackdoorSocketOptions,
  ) {}

  static async listen(path: string, target: BridgeTarget, o: BackdoorSocketOptions = {}): Promise<BackdoorSocket> {
    const bytes = Buffer.byteLength(path);
    if (bytes > MAX_SOCKET_PATH) throw new Error(`socket path is ${bytes} bytes, over the ${MAX_SOCKET_PATH}-byte limit: ${path}`);
    await rm(path, { force: true });
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const self = new BackdoorSocket(path, server, target, o);
    server.on("connection", (s) => void self.handle(s));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    await chmod(path, 0o600);
    return self;
  }

  /** Connections being bridged right now. */
  get connections(): number {
    return this.live.size;
  }

  private log(msg: string): void {
    this.o.log?.(msg);
  }

  /** A connection number for the OK line: unique among live ones, at most 65535. */
  private connectionNumber(): number {
    const n = this.nextId;
    this.nextId = n >= 65535 ? 1024 : n + 1;
    return n;
  }

  private async handle(client: Socket): Promise<void> {
    if (this.closed) return void client.destroy();
    this.live.add(client);
    client.on("error", () => {}); // a client that goes away mid-handshake is not our error
    client.once("close", () => this.live.delete(client));
    client.resume();
    const h = await readHandshake(client, this.o);
    if (h.kind === "invalid") {
      this.log(`ssh backdoor: dropped a connection: ${h.reason}`);
      return void client.destroy();
    }
    const refusal = await this.target.admit?.(h.port).catch((e: Error) => e.message);
    if (refusal) {
      this.log(`ssh backdoor: refused a connection to port ${h.port}: ${refusal}`);
      return void client.destroy();
    }
    let peer: Duplex | Adopted;
    try {
      peer = await this.target.open(h.port);
    } catch (e) {
      this.log(`ssh backdoor: port ${h.port}: ${(e as Error).message}`);
      return void client.destroy();
    }
    if (client.destroyed || this.closed) {
      if ("adopt" in peer) return;
      return void peer.destroy();
    }
    if (h.kind === "connect") client.write(okLine(this.connectionNumber()));
    const head = h.kind === "connect" ? h.rest : h.replay;
    if ("adopt" in peer) {
      // An in-process server has no use for a half-open socket (SSH does not half-close):
      // the client's EOF closes the connection, which ends its sessions.
      client.once("end", () => client.end());
      if (head.length) client.unshift(head);
      // Left paused: the adopter resumes it once it listens (ssh2 does so only after its
      // crypto setup, a promise away; data that flowed before that would be lost).
      peer.adopt(client);
      return;
    }
    this.peers.add(peer);
    peer.once("close", () => this.peers.delete(peer));
    if (head.length) peer.write(head);
    bridge(client, peer);
  }

  /** Stop listening, cut every live bridge, remove the socket file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.live) s.destroy();
    for (const p of this.peers) p.destroy();
    await done;
    await rm(this.path, { force: true }); // a failure is the caller's to log (ssh-backdoor.ts)
  }
}

/**
 * Pipe two streams into each other. An end of input on one side is passed on as an end of
 * output on the other (half-close works: `ssh host 'cat > f' < file` sees its EOF); an error
 * or an abrupt close on either side takes both down.
 */
export function bridge(a: Duplex, b: Duplex): void {
  a.on("error", () => b.destroy());
  b.on("error", () => a.destroy());
  // Once one side is gone nothing more can flow: flush what was written to the other, then close it.
  a.once("close", () => finishThenDestroy(b));
  b.once("close", () => finishThenDestroy(a));
  a.pipe(b);
  b.pipe(a);
  a.resume();
  b.resume();
}

function finishThenDestroy(s: Duplex): void {
  if (s.destroyed) return;
  if (s.writableFinished) s.destroy();
  else if (s.writableEnded) s.once("finish", () => s.destroy());
  else s.end(() => s.destroy());
}
