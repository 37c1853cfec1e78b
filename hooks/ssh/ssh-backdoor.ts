import { mkdirSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import type { BaseMachine } from "../../vm/machine.ts";
import { MachineError } from "../../vm/errors.ts";
import { controlDir, mkdtempLower } from "../control/control-paths.ts";
import type { LocalSshServer } from "./local-ssh-server.ts";
import { BackdoorSocket, MAX_SOCKET_PATH, type Adopted, type BridgeTarget } from "./ssh-backdoor-socket.ts";
import { socketPathFor, sshCommands } from "./ssh-lines.ts";
import { connectVsockMux } from "./vsock-mux.ts";
import { bestEffort } from "../../common/teardown.ts";

export interface SshBackdoorOptions {
  /** Where the sockets should go (the run's private state directory). */
  dir: string;
  /** Thaw a frozen machine for a connection (--ssh-thaws, default true), or refuse it. */
  thaws: boolean;
  log(machine: string, msg: string): void;
}

interface Entry {
  machine: BaseMachine;
  socket: BackdoorSocket;
  close(): void;
}

/**
 * A run's SSH backdoor: `<dir>/<machine>_host.socket` for each of its machines, a hybrid
 * vsock socket (vsock-mux.ts) bridged to the machine:
 * - local: port 22 is an ssh2 server in this worker whose sessions run in the sandbox;
 *   other ports are TCP on 127.0.0.1 (local machines share the host's network).
 * - qemu: through a user-network forward from an ephemeral 127.0.0.1 port to the guest's
 *   port, made on first use, inside QEMU's own network namespace and reached through a relay
 *   there (net-namespace.ts, netns-relay.ts); or through vhost-device-vsock where it is
 *   installed and the guest is one that listens on AF_VSOCK (see vhost-vsock.ts).
 * A connection to a frozen machine thaws it first (or, with thaws=false, is refused), and
 * the run's log says which.
 */
export class SshBackdoor {
  private constructor(
    readonly dir: string,
    private readonly ownDir: boolean,
    private readonly entries: Map<string, Entry>,
    private readonly o: SshBackdoorOptions,
  ) {}

  /** Make the sockets, before the machines start (a qemu machine's vsock device is chosen here). */
  static async open(machines: BaseMachine[], o: SshBackdoorOptions): Promise<SshBackdoor> {
    // The run's state directory if its socket paths fit in 107 bytes and are lower case
    // (`ssh vsock-mux/<path>` hands the path over as OpenSSH's %h, which it lowercases);
    // else a private directory of our own under the control directory.
    const longest = Math.max(0, ...machines.map((m) => Buffer.byteLength(m.name)));
    const fits = (dir: string): boolean => Buffer.byteLength(socketPathFor(dir, "")) + longest <= MAX_SOCKET_PATH;
    let dir = join(o.dir, "ssh");
    let ownDir = false;
    if (!fits(dir) || dir !== dir.toLowerCase()) {
      try {
        const own = mkdtempLower(join(controlDir(), "ssh-"));
        if (fits(own) && own === own.toLowerCase()) [dir, ownDir] = [own, true];
        else rmSync(own, { recursive: true, force: true });
      } catch {
        /* no control directory: stay in the state directory */
      }
    }
    const entries = new Map<string, Entry>();
    const self = new SshBackdoor(dir, ownDir, entries, o);
    if (!ownDir) {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
      } catch (e) {
        for (const m of machines) o.log(m.name, `no ssh backdoor: ${(e as Error).message}`);
        return self;
      }
    }
    for (const m of machines) {
      const path = socketPathFor(dir, m.name);
      if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
        o.log(m.name, `no ssh backdoor: its socket path would be over ${MAX_SOCKET_PATH} bytes (${path})`);
        continue;
      }
      try {
        const { target, close } = await self.targetFor(m);
        const socket = await BackdoorSocket.listen(path, target, { log: (msg) => o.log(m.name, msg) });
        entries.set(m.name, { machine: m, socket, close });
      } catch (e) {
        o.log(m.name, `no ssh backdoor: ${(e as Error).message}`);
      }
    }
    return self;
  }

  socketPath(machine: string): string | undefined {
    return this.entries.get(machine)?.socket.path;
  }

  /** Every machine's socket, by machine name (what a breakpoint's ssh lines list). */
  sockets(): Array<{ machine: string; path: string }> {
    return [...this.entries.entries()].map(([machine, e]) => ({ machine, path: e.socket.path })).sort((a, b) => (a.machine < b.machine ? -1 : a.machine > b.machine ? 1 : 0));
  }

  /** Print how to connect (when the machine has started). */
  announce(machine: string): void {
    const path = this.socketPath(machine);
    if (!path) return;
    const c = sshCommands(machine, path);
    this.o.log(machine, `ssh backdoor: ${c.vsockMux ?? "(no vsock-mux/ line: the socket path has capitals, which OpenSSH lowercases in %h)"}`);
    this.o.log(machine, `ssh backdoor: ${c.proxy}`);
  }

  async close(): Promise<void> {
    for (const [name, e] of this.entries) {
      await bestEffort((msg) => this.o.log(name, msg), "closing its ssh backdoor socket", e.socket.close());
      e.close();
    }
    this.entries.clear();
    if (this.ownDir) rmSync(this.dir, { recursive: true, force: true });
  }

  private async targetFor(m: BaseMachine): Promise<{ target: BridgeTarget; close(): void }> {
    let reach: (port: number) => Promise<Duplex | Adopted>;
    let close = (): void => {};
    const access = m.backdoorAccess();
    if (access.kind === "sandbox") {
      // Made on the first SSH connection: a run nobody connects to never loads ssh2.
      let server: Promise<LocalSshServer> | undefined;
      const sshServer = (): Promise<LocalSshServer> =>
        (server ??= import("./local-ssh-server.ts").then(({ LocalSshServer }) => new LocalSshServer(access.machine, (msg) => this.o.log(m.name, msg))));
      reach = async (port) => {
        if (port !== 22) return tcpConnect(port);
        const s = await sshServer();
        return { adopt: (c: Socket) => s.adopt(c) };
      };
      close = () => void server?.then((s) => s.close());
    } else if (access.kind === "vsock") {
      reach = (port) => {
        const uds = access.socket();
        if (!uds) return Promise.reject(new Error("the guest has no vsock device"));
        return connectVsockMux(uds, port);
      };
    } else {
      reach = async (port) => {
        if (!(port >= 1 && port <= 65535)) throw new Error(`port ${port} is not a TCP port`);
        // The log line already names the machine: the error's detail, not its "machine X: ".
        return access.open(port).catch((e: Error) => Promise.reject(e instanceof MachineError ? new Error(e.detail) : e));
      };
    }
    return { target: new MachineTarget(m, this.o, reach), close };
  }
}

/** Admission (frozen or not running) for one machine, then `reach`. */
class MachineTarget implements BridgeTarget {
  private thawing: Promise<void> | undefined;

  constructor(
    private readonly m: BaseMachine,
    private readonly o: SshBackdoorOptions,
    readonly open: (port: number) => Promise<Duplex | Adopted>,
  ) {}

  async admit(port: number): Promise<string | undefined> {
    const m = this.m;
    if (m.state === "running") return undefined;
    if (m.state === "frozen") {
      if (!this.o.thaws) return `the machine is frozen and --ssh-thaws is false (thaw("${m.name}") in the breakpoint console, then connect again)`;
      // One thaw for a burst of connections.
      this.thawing ??= (async () => {
        this.o.log(m.name, `an SSH connection (port ${port}) thaws the machine: a frozen machine cannot answer (--ssh-thaws=false refuses instead)`);
        await m.thaw();
      })().finally(() => (this.thawing = undefined));
      await this.thawing;
      return (m.state as string) === "running" ? undefined : `could not thaw it (it is ${m.state})`;
    }
    return m.state === "created" || m.state === "starting" ? "the machine has not started yet" : `the machine is ${m.state}`;
  }
}

/** A TCP connection to 127.0.0.1:port, once connected. */
function tcpConnect(port: number): Promise<Socket> {
  if (!(port >= 1 && port <= 65535)) return Promise.reject(new Error(`port ${port} is not a TCP port`));
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    s.once("connect", () => {
      s.removeAllListeners("error");
      s.pause();
      resolve(s);
    });
    s.once("error", (e: NodeJS.ErrnoException) => reject(new Error(e.code === "ECONNREFUSED" ? `nothing listens on port ${port}` : e.message)));
  });
}
