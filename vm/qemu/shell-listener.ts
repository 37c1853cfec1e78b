// The host side of a guest's backdoor console: a UNIX socket haltpoint listens on
// before QEMU starts (QEMU connects to it as a client), and the wait for the guest's
// "ready" line on it.

import { rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";

/** What a guest prints on /dev/hvc0 when its root shell is reading commands (NixOS does too). */
export const BACKDOOR_MARKER = "Spawning backdoor root shell...";

export interface ReadyShell {
  /**
   * The connection to the guest's shell, PAUSED so that nothing is lost: attach your
   * reader, then call `socket.resume()`.
   */
  socket: Socket;
  /** Bytes that came after the marker line (normally none): feed them to your reader first. */
  rest: Buffer;
}

export class ShellListener {
  private socket: Socket | undefined;

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly connection: Promise<Socket>,
  ) {
    connection.then((s) => (this.socket = s));
  }

  /** Listen on `path` (a stale socket file there is removed first). */
  static async listen(path: string): Promise<ShellListener> {
    if (Buffer.byteLength(path) > 107) throw new Error(`shell socket path is over the 107-byte UNIX socket limit: ${path}`);
    await rm(path, { force: true });
    const server = createServer();
    // Exactly one client, QEMU: later connections are refused.
    const connection = new Promise<Socket>((resolve) => {
      server.once("connection", (socket) => {
        server.close();
        // Errors (ECONNRESET when QEMU is killed) are followed by "close", which is what
        // waiters act on; without a listener they would crash the process.
        socket.on("error", () => {});
        resolve(socket);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return new ShellListener(path, server, connection);
  }

  /**
   * Wait until the guest printed BACKDOOR_MARKER. Fails after `timeoutMs`, when
   * `signal` aborts (e.g. QEMU exited), or when the connection closes first. The error
   * carries the last bytes seen, which usually say what went wrong.
   */
  async waitForMarker(timeoutMs: number, signal?: AbortSignal): Promise<ReadyShell> {
    let socket: Socket | undefined;
    let seen = Buffer.alloc(0);
    let cleanup = () => {};
    try {
      return await new Promise<ReadyShell>((resolve, reject) => {
        const fail = (why: string) => {
          const tail = seen.toString("utf8").slice(-200).trim();
          reject(new Error(`no backdoor shell on ${this.path}: ${why}${tail ? ` (last output: ${JSON.stringify(tail)})` : ""}`));
        };
        const timer = setTimeout(() => fail(`guest did not print "${BACKDOOR_MARKER}" within ${timeoutMs / 1000} s`), timeoutMs);
        const onAbort = () => fail(String(signal?.reason ?? "aborted"));
        if (signal?.aborted) return onAbort();
        signal?.addEventListener("abort", onAbort, { once: true });
        const onData = (chunk: Buffer) => {
          seen = Buffer.concat([seen, chunk]);
          const at = seen.indexOf(BACKDOOR_MARKER);
          if (at < 0) return;
          let after = at + BACKDOOR_MARKER.length;
          while (seen[after] === 0x0d || seen[after] === 0x0a) after++;
          socket!.pause();
          resolve({ socket: socket!, rest: seen.subarray(after) });
        };
        const onClose = () => fail("the connection closed (QEMU exited?)");
        cleanup = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          socket?.off("data", onData);
          socket?.off("close", onClose);
        };
        this.connection.then((s) => {
          socket = s;
          s.on("data", onData);
          s.once("close", onClose);
        });
      });
    } finally {
      cleanup();
    }
  }

  /**
   * Wait for QEMU to connect, for a guest restored from a snapshot: its shell was already
   * up when the snapshot was saved and prints no marker again.
   */
  async waitForConnection(timeoutMs: number, signal?: AbortSignal): Promise<ReadyShell> {
    let timer: NodeJS.Timeout | undefined;
    let onAbort = () => {};
    try {
      const socket = await Promise.race([
        this.connection,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no backdoor shell on ${this.path}: QEMU did not connect within ${timeoutMs / 1000} s`)), timeoutMs);
          onAbort = () => reject(new Error(`no backdoor shell on ${this.path}: ${String(signal?.reason ?? "aborted")}`));
          if (signal?.aborted) onAbort();
          signal?.addEventListener("abort", onAbort, { once: true });
        }),
      ]);
      socket.pause();
      return { socket, rest: Buffer.alloc(0) };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Stop listening and close the connection, if any; removes the socket file. */
  async close(): Promise<void> {
    this.server.close();
    this.socket?.destroy();
    await rm(this.path, { force: true });
  }
}
