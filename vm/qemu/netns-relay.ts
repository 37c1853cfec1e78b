import { execa, type ResultPromise } from "execa";
import { readlinkSync } from "node:fs";
import { rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { packageFile } from "../../package-root.ts";
import { withParentDeathSignal } from "../parent-death.ts";
import { enterNetNamespace, type NetNamespaceMode } from "./net-namespace.ts";

// The worker's side of the relay into a QEMU's private network namespace (netns-relay.mjs):
// started on first use with nsenter into QEMU's namespace, reached over a UNIX socket in the
// machine's private directory. A byte relay per connection (not fds handed over IPC): large
// transfers and many parallel sessions are plain TCP streams inside the namespace.

const RELAY_SCRIPT = packageFile("vm/qemu/netns-relay.mjs");

export class NetnsRelay {
  private constructor(
    readonly socketPath: string,
    private readonly proc: ResultPromise,
  ) {}

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** Start the relay inside the network namespace of process `pid`; resolves once it listens. */
  static async start(mode: NetNamespaceMode, pid: number, socketPath: string): Promise<NetnsRelay> {
    // nsenter into a process that has not made its namespace yet would relay on the host's loopback.
    const ns = (p: string): string | undefined => {
      try {
        return readlinkSync(`/proc/${p}/ns/net`);
      } catch {
        return undefined;
      }
    };
    const theirs = ns(String(pid));
    if (theirs === undefined) throw new Error(`qemu (pid ${pid}) is gone`);
    if (theirs === ns("self")) throw new Error(`qemu (pid ${pid}) is not in a network namespace of its own`);
    await rm(socketPath, { force: true });
    const argv = [...enterNetNamespace(mode, pid), ...withParentDeathSignal([process.execPath, RELAY_SCRIPT, socketPath])];
    const proc = execa(argv[0]!, argv.slice(1), { stdin: "pipe", stdout: "pipe", stderr: "pipe", buffer: false, reject: false, detached: true, cleanup: true });
    proc.catch(() => {}); // reject: false: it never rejects; stop() awaits its end
    await new Promise<void>((resolve, reject) => {
      let err = "";
      proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
      proc.stdout!.once("data", () => resolve());
      void proc.then((r) => reject(new Error(`the relay into qemu's network namespace exited (${r.exitCode ?? r.signal}): ${err.trim() || "no output"}`)));
    });
    return new NetnsRelay(socketPath, proc);
  }

  /**
   * A connection to 127.0.0.1:`port` inside the namespace, once it was accepted there, with
   * the relay's local port of it (to find QEMU's end in /proc). Comes back paused, with any
   * bytes already received put back.
   */
  connect(port: number): Promise<{ socket: Socket; innerLocalPort: number }> {
    return new Promise((resolve, reject) => {
      const s = connect({ path: this.socketPath, allowHalfOpen: true });
      let head = Buffer.alloc(0);
      const fail = (why: string): void => {
        s.destroy();
        reject(new Error(why));
      };
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk]);
        const nl = head.indexOf(10);
        if (nl < 0) return;
        s.off("data", onData);
        s.off("end", onEnd);
        s.off("error", onError);
        s.pause();
        const rest = head.subarray(nl + 1);
        if (rest.length) s.unshift(rest);
        resolve({ socket: s, innerLocalPort: Number(head.subarray(0, nl).toString()) });
      };
      const onEnd = (): void => fail(`nothing listens on port ${port} in qemu's network namespace`);
      const onError = (e: Error): void => fail(`the relay into qemu's network namespace: ${e.message}`);
      s.on("data", onData);
      s.once("end", onEnd);
      s.once("error", onError);
      s.once("connect", () => s.write(`${port}\n`));
    });
  }

  async stop(): Promise<void> {
    const pid = this.proc.pid;
    if (pid !== undefined) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await this.proc.catch(() => {}); // killed: its rejection is the kill we asked for
    await rm(this.socketPath, { force: true }); // a failure is the caller's to log
  }
}
