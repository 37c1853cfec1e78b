import type { ChildProcess } from "node:child_process";
import { existsSync, readlinkSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { execa } from "execa";
import ssh2 from "ssh2";
import type { Connection, PseudoTtyInfo, ServerChannel, Session } from "ssh2";
import { descendantsOf, signal } from "../../vm/local/process-tree.ts";
import { bridge } from "./ssh-backdoor-socket.ts";

const { Server, utils } = ssh2;

/** What the SSH server needs from a local machine (a LocalMachine; a stand-in in tests). */
export interface SandboxHost {
  readonly name: string;
  spawnInside(argv: string[], opts?: { env?: NodeJS.ProcessEnv }): ChildProcess;
  innerPid(child: ChildProcess): number | undefined;
  sandboxEnv(): NodeJS.ProcessEnv;
}

let hostKey: string | undefined;

/** One ed25519 host key per worker, made on first use (about a millisecond). */
function localHostKey(): string {
  hostKey ??= utils.generateKeyPairSync("ed25519").private;
  return hostKey;
}

const SFTP_SERVERS = ["/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server", "/usr/lib/ssh/sftp-server", "/usr/lib/sftp-server"];

/** The host's OpenSSH sftp-server, if it has one (Debian: openssh-sftp-server). */
export function findSftpServer(): string | undefined {
  return SFTP_SERVERS.find((p) => existsSync(p));
}

const SHELL = existsSync("/bin/bash") ? "/bin/bash" : "/bin/sh";

/**
 * An SSH server for one local machine, in this worker, fed connections by its backdoor
 * socket (no TCP port at all). Sessions run inside the machine's sandbox — its namespaces,
 * directory and environment — so they see what the test's commands see, and they freeze
 * with the machine. exec, shell, pty (`ssh -tt`, through util-linux `script`), env, signal
 * and window-change requests work; exit status and stderr come back as sshd would send
 * them; `sftp` runs the host's sftp-server inside the sandbox where one is installed
 * (otherwise `scp -O` works); `ssh -L` forwards connect from the host's network, which
 * local machines share.
 *
 * Authentication: every user and every method (the "none" method OpenSSH tries first) is
 * accepted. The only way in is the backdoor socket, a 0600 file in a 0700 directory of the
 * user who runs haltpoint, who can already do anything the sandbox can: a password would
 * protect nothing. Sessions run as that user (root in the sandbox's namespaces).
 */
export class LocalSshServer {
  private readonly server: InstanceType<typeof Server>;
  private readonly clients = new Set<Connection>();
  private readonly running = new Set<ChildProcess>();

  constructor(
    private readonly machine: SandboxHost,
    private readonly log: (msg: string) => void = () => {},
  ) {
    // HP_SSH_DEBUG=1: ssh2's protocol trace on stderr.
    const debug = process.env.HP_SSH_DEBUG ? (m: string) => console.error(`[ssh ${machine.name}] ${m}`) : undefined;
    this.server = new Server({ hostKeys: [localHostKey()], ident: "haltpoint", debug }, (client) => this.onClient(client));
  }

  /** Serve an SSH client on `socket` (already connected, maybe with bytes put back). */
  adopt(socket: Socket): void {
    this.server.injectSocket(socket);
  }

  /** End every connection; hang up whatever their sessions still run. */
  close(): void {
    for (const c of this.clients) c.end();
    for (const p of this.running) this.hangUp(p);
  }

  private onClient(client: Connection): void {
    this.clients.add(client);
    client.on("error", () => {});
    client.on("close", () => this.clients.delete(client));
    client.on("authentication", (ctx) => ctx.accept());
    client.on("ready", () => {
      client.on("session", (accept) => this.onSession(accept()));
      client.on("tcpip", (accept, reject, info) => {
        const s = connect({ host: info.destIP, port: info.destPort, allowHalfOpen: true });
        s.once("error", () => reject());
        s.once("connect", () => {
          s.removeAllListeners("error");
          bridge(accept(), s);
        });
      });
    });
  }

  private onSession(session: Session): void {
    let pty: PseudoTtyInfo | undefined;
    let proc: ChildProcess | undefined;
    const env: Record<string, string> = {};
    session.on("pty", (accept, _reject, info) => {
      pty = info;
      accept?.();
    });
    session.on("env", (accept, _reject, info) => {
      env[info.key] = info.val;
      accept?.();
    });
    session.on("window-change", (accept, _reject, info) => {
      if (pty) {
        pty = { ...pty, rows: info.rows, cols: info.cols };
        if (proc) this.resize(proc, info.rows, info.cols);
      }
      accept?.();
    });
    session.on("signal", (accept, _reject, info) => {
      const inner = proc && this.machine.innerPid(proc);
      if (inner !== undefined) signal(inner, `SIG${info.name}` as NodeJS.Signals);
      accept?.();
    });
    session.on("auth-agent", (_accept, reject) => reject?.());
    session.on("x11", (_accept, reject) => reject?.());
    session.on("exec", (accept, _reject, info) => {
      this.log(`ssh: exec${pty ? " (pty)" : ""}: ${info.command}`);
      proc = this.run(accept(), { command: info.command, pty, env });
    });
    session.on("shell", (accept) => {
      this.log(`ssh: shell${pty ? " (pty)" : ""}`);
      proc = this.run(accept(), { pty, env });
    });
    session.on("subsystem", (accept, reject, info) => {
      if (info.name !== "sftp") return reject();
      const server = findSftpServer();
      const channel = accept();
      if (!server) {
        channel.stderr.write(`haltpoint: machine ${this.machine.name}: no sftp-server on this host (install openssh-sftp-server), use scp -O\n`);
        channel.exit(1);
        channel.end();
        return;
      }
      proc = this.run(channel, { argv: [server], env });
    });
  }

  /** Start a session's process in the sandbox and wire it to `channel`. */
  private run(channel: ServerChannel, o: { command?: string; argv?: string[]; pty?: PseudoTtyInfo; env: Record<string, string> }): ChildProcess | undefined {
    const env: NodeJS.ProcessEnv = { ...this.machine.sandboxEnv(), ...o.env };
    let argv: string[];
    if (o.argv) argv = o.argv;
    else if (o.pty) {
      // `script` gives the session a pseudo-terminal (and makes its shell the session
      // leader with it as controlling terminal); -e passes the exit status on.
      const size = `stty rows ${int(o.pty.rows, 24)} cols ${int(o.pty.cols, 80)} 2>/dev/null`;
      env.TERM = o.pty.term || "xterm";
      env.SHELL = SHELL;
      let inner: string;
      if (o.command !== undefined) {
        env.HP_SSH_COMMAND = o.command;
        inner = `c=$HP_SSH_COMMAND; unset HP_SSH_COMMAND; ${size}; exec ${SHELL} -c "$c"`;
      } else {
        env.PS1 = "\\u@\\h:\\w\\$ ";
        inner = `${size}; exec ${SHELL} -i`;
      }
      argv = ["script", "-qec", inner, "/dev/null"];
    } else argv = o.command !== undefined ? [SHELL, "-c", o.command] : [SHELL];

    let proc: ChildProcess;
    try {
      proc = this.machine.spawnInside(argv, { env });
    } catch (e) {
      channel.stderr.write(`haltpoint: ${(e as Error).message}\n`);
      channel.exit(255);
      channel.end();
      return undefined;
    }
    this.running.add(proc);
    let exited = false;
    proc.stdin!.on("error", () => {});
    if (o.pty) {
      // EOF from the client is a Ctrl-D typed at the terminal (closing script's input would end the session at once).
      channel.on("data", (d: Buffer) => proc.stdin!.write(d));
      channel.on("end", () => proc.stdin!.writable && proc.stdin!.write("\x04"));
    } else channel.pipe(proc.stdin!);
    proc.stdout!.pipe(channel, { end: false });
    proc.stderr!.pipe(channel.stderr, { end: false });
    proc.on("error", (e) => {
      channel.stderr.write(`haltpoint: cannot start ${argv[0]}: ${e.message}\n`);
    });
    proc.on("close", (code, sig) => {
      exited = true;
      this.running.delete(proc);
      if (sig) channel.exit(sig.replace(/^SIG/, ""), false, "");
      else channel.exit(code ?? 255);
      channel.end();
    });
    // The client went away first: hang up the session, as a terminal would.
    channel.on("close", () => {
      if (!exited) this.hangUp(proc);
    });
    return proc;
  }

  /** SIGHUP every process of a session (those that ignore it, like nohup's, live on). */
  private hangUp(proc: ChildProcess): void {
    if (proc.pid === undefined) return;
    for (const p of [proc.pid, ...descendantsOf(proc.pid)].reverse()) signal(p, "SIGHUP");
  }

  /** Tell a pty session its new size: stty on the terminal that its processes have open. */
  private resize(proc: ChildProcess, rows: number, cols: number): void {
    if (proc.pid === undefined) return;
    for (const p of descendantsOf(proc.pid)) {
      let tty: string;
      try {
        tty = readlinkSync(`/proc/${p}/fd/0`);
      } catch {
        continue;
      }
      if (!tty.startsWith("/dev/pts/")) continue;
      void execa("stty", ["-F", `/proc/${p}/fd/0`, "rows", String(int(rows, 24)), "cols", String(int(cols, 80))], { reject: false });
      return;
    }
  }
}

function int(n: number, fallback: number): number {
  return Number.isInteger(n) && n > 0 && n < 10_000 ? n : fallback;
}
