import { createServer, type Server, type Socket } from "node:net";

// forwardPort(hostPort, guestPort) for a QEMU in its own network namespace: QEMU's forward
// listens inside the namespace, so the host port the test asked for is this listener on the
// host's 127.0.0.1, which pipes each connection into the namespace. It stays reachable by every
// local user, as on the host without a namespace: the test asked for that port itself.

export class HostForward {
  private readonly conns = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  /** Listen on 127.0.0.1:`hostPort`; `open` gives each connection its peer inside the namespace. */
  static async listen(hostPort: number, open: () => Promise<Socket>): Promise<HostForward> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const self = new HostForward(server);
    server.on("connection", (c) => void self.serve(c, open));
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) => reject(new Error(`cannot listen on 127.0.0.1:${hostPort}: ${e.code ?? e.message}`)));
      server.listen(hostPort, "127.0.0.1", () => resolve());
    });
    return self;
  }

  private async serve(c: Socket, open: () => Promise<Socket>): Promise<void> {
    this.conns.add(c);
    c.once("close", () => this.conns.delete(c));
    c.on("error", () => c.destroy());
    let up: Socket;
    try {
      up = await open();
    } catch {
      return void c.destroy();
    }
    if (c.destroyed) return void up.destroy();
    this.conns.add(up);
    up.once("close", () => this.conns.delete(up));
    up.on("error", () => c.destroy());
    c.on("error", () => up.destroy());
    // pipe() passes an end on as an end: half-closes go through.
    c.pipe(up);
    up.pipe(c);
    c.once("close", () => up.destroy());
    up.once("close", () => (c.writableEnded ? c.destroy() : c.end(() => c.destroy())));
    c.resume();
    up.resume();
  }

  close(): Promise<void> {
    for (const s of this.conns) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}
