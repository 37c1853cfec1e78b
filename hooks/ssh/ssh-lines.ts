import { readdirSync } from "node:fs";
import { join } from "node:path";
import { packageFile } from "../../package-root.ts";

// The lines that tell a person how to reach a machine's SSH backdoor, printed when the
// machine starts and again in a breakpoint's `!!!` lines. Like NixOS's driver, the first is
// `ssh -o User=root vsock-mux/<path>` (needs systemd-ssh-proxy, systemd ≥ 256); the second
// needs nothing but haltpoint itself as the ProxyCommand (named by its full path).

export const SOCKET_SUFFIX = "_host.socket";

/** `<dir>/<machine>_host.socket`, the name NixOS's sshBackdoor gives the socket. */
export function socketPathFor(dir: string, machine: string): string {
  return join(dir, `${machine}${SOCKET_SUFFIX}`);
}

/** The machines that have a socket in `dir`, with their sockets, by name. */
export function socketsIn(dir: string): Array<{ machine: string; path: string }> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith(SOCKET_SUFFIX))
    .sort()
    .map((n) => ({ machine: n.slice(0, -SOCKET_SUFFIX.length), path: join(dir, n) }));
}

const BIN = packageFile("bin/haltpoint.mjs");

/** How to run this haltpoint from a shell, in every command haltpoint prints: its bin's full
 *  path, so the line works pasted anywhere (in a project that installed haltpoint it is only in
 *  node_modules/.bin, not on PATH). */
export function haltpointCommand(): string {
  return shellQuote(BIN);
}

/** Quote for a POSIX shell when needed. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The ProxyCommand value that reaches `socket` (port 22). */
export function proxyCommand(socket: string): string {
  return `${haltpointCommand()} proxy ${shellQuote(socket)}`;
}

/**
 * The two ways to ssh in, as one pastes them into a shell. The vsock-mux one only for a
 * lower-case path: systemd-ssh-proxy gets it as %h, which OpenSSH lowercases.
 */
export function sshCommands(machine: string, socket: string): { vsockMux?: string; proxy: string } {
  return {
    vsockMux: socket === socket.toLowerCase() ? `ssh -o User=root vsock-mux/${socket}` : undefined,
    proxy:
      `ssh -o ProxyCommand=${shellQuote(proxyCommand(socket))} ` +
      `-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@${machine}`,
  };
}

/** A breakpoint's ssh lines, one group per machine with a socket (the halt event lists them:
 *  the terminal reporter reads no directory). */
export function breakpointSshLines(id: string, sockets: ReadonlyArray<{ machine: string; path: string }>): string[] {
  const lines: string[] = [];
  for (const { machine, path } of sockets) {
    const c = sshCommands(machine, path);
    lines.push(`ssh ${machine}: ${haltpointCommand()} ssh ${id} ${machine}`, ...(c.vsockMux ? [`ssh ${machine}: ${c.vsockMux}`] : []), `ssh ${machine}: ${c.proxy}`);
  }
  return lines;
}
