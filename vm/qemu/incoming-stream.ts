// How a revived machine's saved state reaches QEMU. Snapshot boots use `-incoming exec:zstd
// -dc FILE` (snapshot-format.ts), but a revived QEMU runs under `-sandbox …,spawn=deny`,
// which forbids it to run anything: haltpoint runs the zstd itself and streams what it
// decompresses into the UNIX socket QEMU listens on (`-incoming unix:PATH`). The stream is
// cut off past `maxBytes` (the machine's RAM and then some), so a decompression bomb ends
// there. Measured cost: see docs/bundles.md.

import { execa } from "execa";
import { connect, createServer, type Socket } from "node:net";
import { rm } from "node:fs/promises";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

/** The arguments that make a new QEMU listen for its state on `socketPath`. */
export function incomingArgs(socketPath: string): string[] {
  return ["-incoming", `unix:${socketPath}`];
}

async function connectWhenListening(path: string, signal: AbortSignal, timeoutMs: number): Promise<Socket> {
  const end = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    signal.throwIfAborted();
    const s = await new Promise<Socket | Error>((resolve) => {
      const c = connect(path);
      c.once("connect", () => resolve(c));
      c.once("error", (e) => resolve(e));
    });
    if (!(s instanceof Error)) return s;
    if (Date.now() > end) throw new Error(`QEMU did not listen for its state on ${path} within ${timeoutMs / 1000} s (${s.message})`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

/**
 * Decompress `stateFile` (zstd) into QEMU's incoming socket. `wrap` runs the zstd as
 * someone else (unprivileged-qemu.ts) when revive runs as root. Resolves once all of it was
 * written; rejects (one line) when zstd fails, the stream passes `maxBytes`, or QEMU goes.
 */
export async function feedIncoming(socketPath: string, stateFile: string, o: { maxBytes: number; signal: AbortSignal; wrap?: (argv: string[]) => string[] }): Promise<void> {
  const sock = await connectWhenListening(socketPath, o.signal, 30_000);
  const [cmd, ...args] = (o.wrap ?? ((a) => a))(["zstd", "-dcq"]);
  const zstd = execa(cmd!, args, { inputFile: stateFile, stdout: "pipe", stderr: "pipe", buffer: { stdout: false, stderr: true }, reject: false, cancelSignal: o.signal });
  let n = 0;
  const bound = new Transform({
    transform(chunk: Buffer, _enc, done) {
      n += chunk.length;
      if (n > o.maxBytes) done(new Error(`the saved state decompresses to more than ${o.maxBytes} bytes, more than the machine's memory: refused`));
      else done(null, chunk);
    },
  });
  try {
    await pipeline(zstd.stdout!, bound, sock);
  } catch (e) {
    zstd.kill("SIGKILL");
    sock.destroy();
    await zstd;
    throw e;
  }
  const r = await zstd;
  if (r.exitCode !== 0) throw new Error(`zstd could not decompress the saved state: ${String(r.stderr).trim().split("\n")[0] || `exit code ${r.exitCode}`}`);
}

/**
 * The other way, for a sandboxed QEMU saved again (`haltpoint save` of a revived breakpoint):
 * haltpoint listens on `socketPath`, `migrate` sends the stream there (`start` is called with
 * the URI), and haltpoint's zstd writes it to `file`. `allow` hands the socket to the uid
 * QEMU runs as.
 */
export async function drainOutgoing(socketPath: string, file: string, start: (uri: string) => Promise<void>, allow?: (socketPath: string) => void): Promise<void> {
  await rm(socketPath, { force: true });
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve());
  });
  try {
    allow?.(socketPath);
    const conn = new Promise<Socket>((resolve) => server.once("connection", resolve));
    const zstd = execa("zstd", ["-q", "-1", "-c"], { stdin: "pipe", stdout: { file }, stderr: "pipe", reject: false });
    const piped = conn.then((c) => pipeline(c, zstd.stdin!));
    await Promise.all([start(`unix:${socketPath}`), piped]);
    const r = await zstd;
    if (r.exitCode !== 0) throw new Error(`zstd could not compress the saved state: ${String(r.stderr).trim().split("\n")[0] || `exit code ${r.exitCode}`}`);
  } finally {
    server.close();
    await rm(socketPath, { force: true });
  }
}
