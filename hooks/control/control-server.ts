import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { controlSocketPath } from "./control-paths.ts";
import { stderrTeardownLog, teardownFailure, type TeardownLog } from "../../common/teardown.ts";
import { decodeRequest, encodeReply, LineSplitter, type ControlReply, type ControlRequest } from "./control-protocol.ts";

// The orchestrator's end of the control socket: answers `ls` / `release` / `release-all`
// from other haltpoint processes (see control-protocol.ts). It knows nothing of
// breakpoints; the broker passes a handler.

export type ControlHandler = (req: ControlRequest) => Promise<ControlReply> | ControlReply;

export class ControlServer {
  private readonly conns = new Set<Socket>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly server: Server,
    readonly path: string,
    /** The inode we created, so that close() never removes a successor's socket. */
    private readonly ino: number,
    private readonly handler: ControlHandler,
    private readonly log: TeardownLog,
  ) {
    server.on("connection", (s) => this.serve(s));
    process.on("exit", this.removeSocketFile);
  }

  /**
   * Listen on `path` (default: this process's socket in controlDir()), replacing a stale socket
   * there. `log` says a socket file that could not be removed at the end (default: stderr).
   */
  static async listen(handler: ControlHandler, path = controlSocketPath(), log: TeardownLog = stderrTeardownLog): Promise<ControlServer> {
    await removeStaleSocket(path);
    // allowHalfOpen: a client may send its request and half-close; it still gets the reply.
    const server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) => reject(new Error(`cannot listen on control socket ${path}: ${e.code ?? e.message}`)));
      server.listen(path, () => resolve());
    });
    // The directory is already private (controlDir()); this is the belt to its braces.
    chmodSync(path, 0o600);
    return new ControlServer(server, path, lstatSync(path).ino, handler, log);
  }

  /** Stop answering, drop connections, remove the socket file. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      process.off("exit", this.removeSocketFile);
      for (const c of this.conns) c.destroy();
      // net.Server unlinks its socket file when it closes; removeSocketFile covers the rest.
      this.server.close(() => {
        this.removeSocketFile();
        resolve();
      });
    });
    return this.closing;
  }

  // Also run at process exit: a socket file left behind would look like a live orchestrator
  // until someone tried to connect to it.
  private readonly removeSocketFile = (): void => {
    try {
      if (lstatSync(this.path).ino === this.ino) unlinkSync(this.path);
    } catch (e) {
      // Gone already (net.Server unlinks it as it closes) is the usual end; anything else leaves it behind.
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.log(teardownFailure(`removing the control socket ${this.path}`, e));
    }
  };

  private serve(socket: Socket): void {
    this.conns.add(socket);
    socket.on("close", () => this.conns.delete(socket));
    socket.on("error", () => socket.destroy());
    socket.setEncoding("utf8");
    // Requests on one connection are answered in order, one at a time.
    let queue = Promise.resolve();
    const lines = new LineSplitter(
      (line) => {
        queue = queue.then(() => this.answer(line)).then((reply) => void (socket.writable && socket.write(reply)));
      },
      () => {
        socket.end(encodeReply({ ok: false, error: "control request line too long" }));
      },
    );
    socket.on("data", (chunk: string) => lines.push(chunk));
    socket.on("end", () => {
      lines.end();
      void queue.then(() => socket.end());
    });
  }

  private async answer(line: string): Promise<string> {
    try {
      const req = decodeRequest(line);
      return encodeReply(await this.handler(req));
    } catch (e) {
      return encodeReply({ ok: false, error: e instanceof Error ? e.message : String(e) });
    }
  }
}

/**
 * A socket file at `path` whose listener is gone (its orchestrator crashed, or a pid was
 * reused) refuses connections: remove it. A live listener is never displaced.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new Error(`cannot listen on control socket ${path}: a file that is not a socket is in the way`);
  const alive = await new Promise<boolean>((resolve, reject) => {
    const probe = connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNREFUSED" || e.code === "ENOENT") resolve(false);
      else reject(new Error(`cannot listen on control socket ${path}: probing the socket there: ${e.code ?? e.message}`));
    });
  });
  if (alive) throw new Error(`cannot listen on control socket ${path}: another orchestrator is listening there`);
  try {
    unlinkSync(path);
  } catch {}
}
