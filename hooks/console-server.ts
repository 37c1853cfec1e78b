import { createServer, type Server, type Socket } from "node:net";
import type { MessagePort } from "node:worker_threads";
import { asBuffer, isConsoleReply, postClose, postData, postOpen } from "./console-channel.ts";
import { listenOnFirstFreePort } from "./port-allocator.ts";

// The main-thread side of a breakpoint's console: a TCP listener whose connections are
// relayed, byte for byte, to the halted test's worker over the console channel. The main
// thread must stay out of the REPL: it is shared by the whole suite, while the REPL belongs
// with the test's machines in its worker.
//
// A client that half-closes (`nc -N`, `haltpoint attach` with stdin at end) still gets the
// output of what it sent: its session is closed towards the worker, and the socket is ended
// only when the worker answers with its own close, after its last output.

export interface ConsoleServerOptions {
  /** First port to try; the next free one is used (4444 by default in the broker). */
  startPort: number;
  /** The only address listened on. */
  host: string;
}

export class ConsoleServer {
  private readonly sockets = new Map<number, Socket>();
  private nextSession = 1;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly port: MessagePort,
    private readonly server: Server,
    readonly host: string,
    readonly tcpPort: number,
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
    const server = createServer({ allowHalfOpen: true, noDelay: true });
    const tcpPort = await listenOnFirstFreePort(server, { start: opts.startPort, host: opts.host });
    return new ConsoleServer(port, server, opts.host, tcpPort);
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
    const session = this.nextSession++;
    this.sockets.set(session, socket);
    postOpen(this.port, session);
    socket.on("data", (chunk: Buffer) => {
      if (this.sockets.get(session) === socket) postData(this.port, session, chunk);
    });
    // Half-close: the worker finishes the session and then answers with a close.
    socket.on("end", () => {
      if (this.sockets.get(session) === socket) postClose(this.port, session);
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      if (this.sockets.get(session) !== socket) return;
      this.sockets.delete(session);
      postClose(this.port, session);
    });
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
