import { connect } from "node:net";
import { findBreakpoint, listBreakpoints, listOrchestratorSockets, controlRequest, type Located } from "../../hooks/control/control-client.ts";
import { DO, OPT_ECHO, OPT_NAWS, OPT_SGA, TelnetDecoder, WILL, nawsMessage, negotiation } from "../../hooks/console/telnet.ts";

// The bodies of `haltpoint ls`, `haltpoint attach ID` and `haltpoint release ID|--all`.
// They run in a separate process from the orchestrator(s) and reach them through their
// control sockets (hooks/control/control-client.ts). Each returns the process exit status; errors
// are one line on stderr, never a stack trace.

/** Where a command writes: anything with write(string) (a stream, or a test's collector). */
export interface Out {
  write(s: string): unknown;
}

/** Print every halted test of every orchestrator on this host. */
export async function lsCommand(out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  let listed: Awaited<ReturnType<typeof listBreakpoints>>;
  try {
    listed = await listBreakpoints();
  } catch (e) {
    err.write(`haltpoint ls: ${(e as Error).message}\n`);
    return 1;
  }
  for (const e of listed.errors) err.write(`haltpoint ls: ${e}\n`);
  if (!listed.breakpoints.length) {
    out.write("no halted tests\n");
    return 0;
  }
  out.write(formatTable(listed.breakpoints, Date.now()));
  return 0;
}

/** The ls table: one row per breakpoint, columns padded to their widest cell. */
export function formatTable(rows: Located[], now: number): string {
  const table = [
    ["ID", "RUN", "AGE", "CONSOLE", "MACHINES"],
    ...rows.map(({ info }) => [info.id, info.key, formatAge(now - info.since), `${info.host}:${info.port}`, info.machines.join(",") || "-"]),
  ];
  const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  return table.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  ") + "\n").join("");
}

/** "13s", "2m13s", "1h02m", "3d04h": precise while it matters, short when it does not. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const two = (n: number): string => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86400)}d${two(Math.floor(s / 3600) % 24)}h`;
}

export interface AttachIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: NodeJS.WritableStream & { columns?: number; rows?: number; on(e: "resize", f: () => void): unknown };
  stderr: Out;
}

const CTRL_RIGHT_BRACKET = 0x1d; // telnet's escape key; here: detach

/**
 * Connect to a breakpoint's console: "telnet without telnet installed". On a TTY, stdin
 * goes raw and the console is asked (in telnet terms: DO ECHO, DO SGA) to do the echo and
 * line editing, so arrows, history, Tab and Ctrl-C/Ctrl-D work; Ctrl-] detaches. Otherwise
 * stdin is piped as lines, and at its end the connection is half-closed so the console
 * still answers what was sent before it closes.
 */
export async function attachCommand(id: string, io: AttachIo = process as unknown as AttachIo): Promise<number> {
  const { stdin, stdout, stderr } = io;
  let info: Located["info"];
  try {
    info = (await findBreakpoint(id)).info;
  } catch (e) {
    stderr.write(`haltpoint attach: ${(e as Error).message}\n`);
    return 1;
  }
  const raw = Boolean(stdin.isTTY && stdin.setRawMode);
  return new Promise<number>((resolve) => {
    const socket = connect({ host: info.host, port: info.port, allowHalfOpen: true });
    const telnet = new TelnetDecoder({ crlf: false });
    let status = 0;
    const sendSize = (): void => void socket.write(nawsMessage(stdout.columns ?? 80, stdout.rows ?? 24));
    const onInput = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      if (raw && bytes.includes(CTRL_RIGHT_BRACKET)) {
        stderr.write("\r\nhaltpoint attach: detached\r\n");
        socket.destroy();
        return;
      }
      socket.write(bytes);
    };
    const onInputEnd = (): void => void socket.end();
    socket.on("connect", () => {
      // A console beyond loopback asks for its token first (the control socket is the owner's).
      if (info.token) socket.write(`${info.token}\r\n`);
      if (raw) {
        stderr.write(`attached to ${info.key} at ${info.host}:${info.port} (Ctrl-] detaches)\r\n`);
        stdin.setRawMode!(true);
        socket.write(Buffer.concat([negotiation(DO, OPT_ECHO), negotiation(DO, OPT_SGA), negotiation(WILL, OPT_NAWS)]));
        sendSize();
        stdout.on("resize", sendSize);
      }
      stdin.on("data", onInput);
      stdin.on("end", onInputEnd);
      stdin.resume();
    });
    let tokenPrompt = info.token ? "haltpoint console token: " : "";
    socket.on("data", (chunk: Buffer) => {
      let { data } = telnet.decode(chunk); // drop the console's negotiation answers
      if (tokenPrompt) {
        // The token was sent for the user: do not show its prompt.
        const n = Math.min(tokenPrompt.length, data.length);
        if (data.subarray(0, n).toString() === tokenPrompt.slice(0, n)) [data, tokenPrompt] = [data.subarray(n), tokenPrompt.slice(n)];
        else tokenPrompt = "";
      }
      if (data.length) stdout.write(data);
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      stderr.write(`haltpoint attach: ${info.key} console at ${info.host}:${info.port}: ${e.code ?? e.message}\n`);
      status = 1;
    });
    socket.on("end", () => socket.end());
    socket.on("close", () => {
      stdin.off("data", onInput);
      stdin.off("end", onInputEnd);
      stdin.pause();
      if (raw) stdin.setRawMode!(false);
      if (raw) (stdout as unknown as { off(e: string, f: () => void): void }).off("resize", sendSize);
      resolve(status);
    });
  });
}

/** Release one breakpoint by id, or (`{all: true}`) every breakpoint of every orchestrator. */
export async function releaseCommand(idOrAll: string | { all: true }, out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  try {
    if (typeof idOrAll === "string") {
      const { socket } = await findBreakpoint(idOrAll);
      const reply = await controlRequest(socket, { cmd: "release", id: idOrAll });
      if (!reply.ok) throw new Error(reply.error);
      out.write(`released ${reply.released.join(", ") || idOrAll}\n`);
      return 0;
    }
    const sockets = await listOrchestratorSockets();
    const released: string[] = [];
    let status = 0;
    for (const socket of sockets) {
      try {
        const reply = await controlRequest(socket, { cmd: "release-all" });
        if (!reply.ok) throw new Error(`orchestrator at ${socket}: ${reply.error}`);
        released.push(...reply.released);
      } catch (e) {
        err.write(`haltpoint release: ${(e as Error).message}\n`);
        status = 1;
      }
    }
    out.write(released.length ? `released ${released.join(", ")}\n` : "no halted tests\n");
    return status;
  } catch (e) {
    err.write(`haltpoint release: ${(e as Error).message}\n`);
    return 1;
  }
}

/**
 * `haltpoint save ID [--out DIR]`: the orchestrator holding breakpoint ID writes it to a bundle
 * (it stays halted). Prints where, how big, and the command that revives it.
 */
export async function saveCommand(id: string, outDir: string | undefined, signKey?: string, out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  try {
    const { readKey, signBundle } = await import("../../hooks/bundles/bundle-signature.ts");
    if (signKey) readKey(signKey, "private"); // a bad key is one line before anything is saved
    const { resolve } = await import("node:path");
    const { haltpointCommand } = await import("../../hooks/ssh/ssh-lines.ts");
    const { socket, info } = await findBreakpoint(id);
    const dir = resolve(outDir ?? `haltpoint-bundle-${info.key.replace(/[^A-Za-z0-9._-]/g, "-")}-${id}`);
    const reply = await controlRequest(socket, { cmd: "save", id, dir }, 330_000);
    if (!reply.ok) throw new Error(reply.error);
    const b = reply.bundle;
    // The orchestrator signed it with the run's key; this one is the caller's choice.
    if (signKey) signBundle(b.dir, signKey);
    const images = b.imageBytes ? `; base image ${(b.imageBytes / 2 ** 20).toFixed(1)} MiB, shared` : "";
    out.write(`saved breakpoint ${id} (${info.key}) to ${b.dir}: ${(b.bytes / 2 ** 20).toFixed(1)} MiB in ${(b.ms / 1000).toFixed(2)} s${images}; it is still halted\n`);
    for (const s of b.skipped) out.write(`  not in the bundle: ${s}\n`);
    out.write(`revive it: ${haltpointCommand()} revive ${b.dir}\n`);
    return 0;
  } catch (e) {
    err.write(`haltpoint save: ${(e as Error).message}\n`);
    return 1;
  }
}
