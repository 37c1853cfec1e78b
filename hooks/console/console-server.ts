import { createServer, type Server, type Socket } from "node:net";
import type { MessagePort } from "node:worker_threads";
import { asBuffer, isConsoleReply, postClose, postData, postOpen } from "./console-channel.ts";
import { checkConsolePeer } from "./console-gate.ts";
import { listenOnFirstFreePort } from "./port-allocator.ts";

// The main-thread side of a breakpoint's console: a TCP listener whose connections are
// relayed, byte for byte, to the halted test's worker over the console channel. The main
// thread must stay out of the REPL: it is shared by the whole suite, while the REPL belongs
// with the test's machines in its worker.
//
// A client that half-closes (`nc -N`, `haltpoint attach` with stdin at end) still gets the
// output of what it sent: its session is closed towards the worker, and the socket is ended
// only when the worker answers with its own close, after its last output.
//
// Every connection first passes the gate (console-gate.ts): only the orchestrator's uid and
// root are served; anyone else gets one line saying why, and the refusal is reported. The
// socket stays paused until then, so not a byte of a refused client reaches the worker.

export interface ConsoleServerOptions {
  /** First port to try; the next free one is used (4444 by default in the broker). */
  startPort: number;
  /** The only address listened on. */
  host: string;
  /** The uid served besides root (default: this process's). */
  ownerUid?: number;
  /** Listening beyond loopback: a peer from another host must send this first. */
  token?: string;
  /** A connection was refused (for the run's output). */
  onRefused?(message: string): void;
}

export class ConsoleServer {
  private readonly sockets = new Map<number, Socket>();
  /** Connections still at the gate (a token not yet sent): cut when the console closes. */
  private readonly pending = new Set<Socket>();
  private nextSession = 1;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly port: MessagePort,
    private readonly server: Server,
    readonly host: string,
    readonly tcpPort: number,
    private readonly opts: ConsoleServerOptions,
  ) {
    port.on("message", this.onReply);
    // The worker closed the channel (its host was closed): nothing more can be served.
    port.once("close", () => void this.close());
    server.on("connection", (s) => this.onConnection(s));
  }

  /**
   * Listen on the first free port from `startPort` on `host` and serve the console channel
   * `port`. The ConsoleServer owns `port` from now on: close() closes it.
   */
  static async listen(port: MessagePort, opts: ConsoleServerOptions): Promise<ConsoleServer> {
    // allowHalfOpen: a client's FIN must not end our side before the worker's last output.
    // pauseOnConnect: nothing is read from a client before the gate has let it in.
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true });
    const tcpPort = await listenOnFirstFreePort(server, { start: opts.startPort, host: opts.host });
    return new ConsoleServer(port, server, opts.host, tcpPort, opts);
  }

  /** Clients connected now. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Say `message` to every connected client, end them, stop listening, close the channel. */
  close(message = "breakpoint released"): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.port.off("message", this.onReply);
      for (const [session, socket] of this.sockets) {
        socket.end(`\r\n${message}\r\n`);
        // A client that does not read must not keep us waiting.
        setTimeout(() => socket.destroy(), 1000).unref();
        postClose(this.port, session);
      }
      this.sockets.clear();
      for (const s of this.pending) s.destroy();
      this.pending.clear();
      this.port.close();
      this.server.close(() => resolve());
    });
    return this.closing;
  }

  private onConnection(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    socket.on("error", () => socket.destroy());
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    this.pending.add(socket);
    void checkConsolePeer(socket, { ownerUid: this.opts.ownerUid ?? process.getuid?.() ?? 0, token: this.opts.token }).then((v) => {
      this.pending.delete(socket);
      if (!v.ok) {
        this.opts.onRefused?.(`refused a console connection from ${from}: ${v.reason}`);
        socket.end(`haltpoint: refused: ${v.reason}\r\n`);
        setTimeout(() => socket.destroy(), 1000).unref();
        return;
      }
      if (this.closing || socket.destroyed) return void socket.destroy();
      this.serve(socket, v.head);
    });
  }

  private serve(socket: Socket, head: Buffer): void {
    const session = this.nextSession++;
    this.sockets.set(session, socket);
    postOpen(this.port, session);
    if (head.length) postData(this.port, session, head);
    socket.on("data", (chunk: Buffer) => {
      if (this.sockets.get(session) === socket) postData(this.port, session, chunk);
    });
    // Half-close: the worker finishes the session and then answers with a close.
    socket.on("end", () => {
      if (this.sockets.get(session) === socket) postClose(this.port, session);
    });
    socket.on("close", () => {
      if (this.sockets.get(session) !== socket) return;
      this.sockets.delete(session);
      postClose(this.port, session);
    });
    socket.resume();
  }

  private readonly onReply = (m: unknown): void => {
    if (!isConsoleReply(m)) return;
    const socket = this.sockets.get(m.session);
    if (!socket) return;
    if (m.t === "data") {
      if (socket.writable) socket.write(asBuffer(m.data));
      return;
    }
    this.sockets.delete(m.session);
    socket.end();
    setTimeout(() => socket.destroy(), 1000).unref();
  };
}
