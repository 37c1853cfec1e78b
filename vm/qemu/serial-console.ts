import { rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";

/**
 * The guest's serial console (ttyS0): QEMU connects to a UNIX socket this worker listens on;
 * what the guest prints goes to `onOutput` (the machine's console log), and sendConsole types
 * into it.
 */
export class SerialConsole {
  private server: Server | undefined;
  private socket: Socket | undefined;

  constructor(private readonly onOutput: (chunk: Buffer) => void) {}

  /** Listen on `path` for this start's QEMU (a new start listens again). */
  async listen(path: string): Promise<void> {
    await rm(path, { force: true });
    const server = createServer((s) => {
      this.socket = s;
      s.on("data", (c: Buffer) => this.onOutput(c));
      s.on("error", () => {});
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
  }

  get connected(): boolean {
    return this.socket !== undefined && !this.socket.destroyed;
  }

  /** Write `text` to the guest's ttyS0 (check `connected` first). */
  async send(text: string): Promise<void> {
    const s = this.socket;
    if (!s) throw new Error("the serial console is not connected");
    await new Promise<void>((resolve, reject) => s.write(text, (e) => (e ? reject(e) : resolve())));
  }

  close(): void {
    this.server?.close();
    this.socket?.destroy();
  }
}
