import { spawn } from "node:child_process";
import { removeStartupSignalHandlers } from "../startup-signals.ts";
import { existsSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { findBreakpoint } from "../../hooks/control/control-client.ts";
import { proxyCommand as proxyCommandLine, socketPathFor, socketsIn } from "../../hooks/ssh/ssh-lines.ts";
import { connectVsockMux } from "../../hooks/ssh/vsock-mux.ts";

// `haltpoint proxy <socket> [port]` and `haltpoint ssh <id> <machine> [args…]`.

export interface ProxyIo {
  stdin: NodeJS.ReadableStream & { destroy?(): void };
  stdout: NodeJS.WritableStream;
  stderr: { write(s: string): unknown };
}

/**
 * An ssh ProxyCommand: connect to a hybrid-vsock socket, ask for `port` (default 22) with
 * `CONNECT <port>`, and once the other side said OK, copy stdin to it and it to stdout.
 * `raw` skips the handshake (the socket then assumes port 22, as for any client that does
 * not start with CONNECT). Resolves with the exit status.
 */
export async function proxyCommand(socketPath: string, port = 22, o: { raw?: boolean; io?: ProxyIo } = {}): Promise<number> {
  const { stdin, stdout, stderr } = o.io ?? (process as unknown as ProxyIo);
  let s: Socket;
  try {
    s = o.raw ? await rawConnect(socketPath) : await connectVsockMux(socketPath, port);
  } catch (e) {
    const err = e as Error & { code?: string };
    const hint =
      err.code === "ECONNREFUSED" && existsSync(socketPath)
        ? " — the port is closed, the machine is not running, or it is frozen and the run has --ssh-thaws=false (the run's output says which)"
        : "";
    stderr.write(`haltpoint proxy: ${err.message}${hint}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let status = 0;
    s.on("error", (e) => {
      stderr.write(`haltpoint proxy: ${socketPath}: ${e.message}\n`);
      status = 1;
    });
    s.on("close", () => {
      stdin.unpipe(s);
      stdin.destroy?.();
      resolve(status);
    });
    s.pipe(stdout, { end: false });
    stdin.pipe(s); // stdin's end half-closes the connection: the other side still answers
    s.resume();
  });
}

function rawConnect(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ path, allowHalfOpen: true });
    s.once("connect", () => {
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (e: NodeJS.ErrnoException) => reject(Object.assign(new Error(`${path}: ${e.code === "ENOENT" ? "no such socket" : e.message}`), { code: e.code })));
  });
}

/** The ssh options that make a backdoor socket a host: our ProxyCommand, no host-key prompts, root. */
export function sshOptions(socketPath: string): string[] {
  return [
    "-o", `ProxyCommand=${proxyCommandLine(socketPath)}`,
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "User=root",
  ];
}

/** `haltpoint ssh ID MACHINE [args…]`: run the real ssh into a halted test's machine. */
export async function sshCommand(id: string, machine: string, args: string[], stderr: { write(s: string): unknown } = process.stderr): Promise<number> {
  let socketDir: string;
  try {
    socketDir = (await findBreakpoint(id)).info.socketDir;
  } catch (e) {
    stderr.write(`haltpoint ssh: ${(e as Error).message}\n`);
    return 1;
  }
  const path = socketPathFor(socketDir, machine);
  if (!existsSync(path)) {
    const have = socketsIn(socketDir).map((s) => s.machine);
    stderr.write(
      have.length
        ? `haltpoint ssh: breakpoint ${id} has no machine '${machine}' with an ssh socket (it has: ${have.join(", ")})\n`
        : `haltpoint ssh: breakpoint ${id} has no ssh sockets (run with --ssh-backdoor, or --debug-hook without --no-ssh-backdoor)\n`,
    );
    return 1;
  }
  // ssh owns the terminal now: Ctrl-C is for the remote side, not for us.
  const ignore = (): void => {};
  removeStartupSignalHandlers();
  process.on("SIGINT", ignore);
  try {
    return await new Promise<number>((resolve) => {
      const child = spawn("ssh", [...sshOptions(path), machine, ...args], { stdio: "inherit" });
      child.on("error", (e) => {
        stderr.write(`haltpoint ssh: cannot run ssh: ${e.message}\n`);
        resolve(127);
      });
      child.on("close", (code, sig) => resolve(code ?? (sig ? 128 + 1 : 255)));
    });
  } finally {
    process.off("SIGINT", ignore);
  }
}
