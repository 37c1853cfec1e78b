import type { Readable, Writable } from "node:stream";

/**
 * The backdoor shell protocol: how haltpoint runs a command in a machine's root shell
 * (bash on a guest's /dev/hvc0, or a local sandbox's bash on pipes) and gets back its
 * exact stdout bytes and exit status in one round trip.
 *
 * Once, after the shell is up, we define a function `__hp`. Each command is then one line,
 *   __hp <id> $'<command, ANSI-C quoted>'
 * which runs the command in a subshell (`set -euo pipefail`, stdin /dev/null, stdout to a
 * file, stderr left on the shell's stderr: the console) and answers with
 *   \x1eHP <id> <status> E                      (no output)
 *   \x1eHP <id> <status> B \n <base64…> \x1eEND <id>   (output, base64: binary-safe)
 * A command with no output costs one fork (the subshell), one with output two (+ base64);
 * the NixOS driver's framing costs a `timeout`, a `bash -c`, a base64 subshell and a
 * second round trip for the status. Output goes through a file, not a pipe, so a command
 * that leaves a daemon running in the background cannot hold the answer hostage.
 * Lines that are not frames (a tty echo, a prompt) are ignored, which is what lets the
 * same framing drive a NixOS guest's backdoor bash.
 */

const FRAME = "\x1eHP ";
const END = "\x1eEND ";

export interface ShellReply {
  status: number;
  stdout: Buffer;
}

export class ShellClosedError extends Error {
  override name = "ShellClosedError";
}

export class ShellTimeoutError extends Error {
  override name = "ShellTimeoutError";
}

/** Quote any string (no NUL) as a bash ANSI-C string `$'…'`: survives a raw tty line. */
export function ansiCQuote(s: string): string {
  let out = "$'";
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === "\\") out += "\\\\";
    else if (ch === "'") out += "\\'";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out + "'";
}

/**
 * The one-time setup: defines `__hp`, silences prompts and line editing. With `runningFile`,
 * each command's subshell first writes "<id> <its pid>" there: a kill request for command
 * <id> (vm/qemu/kill-port.ts) then kills that command's tree and never the next command's.
 */
export function setupScript(outFile: string, runningFile?: string): string {
  const record = runningFile ? `printf '%s %s\\n' "$1" "$BASHPID" >${ansiCQuote(runningFile)}; ` : "";
  return (
    "set +o emacs +o vi +H 2>/dev/null; PS1=; PS2=; PS4=; unset PROMPT_COMMAND; " +
    `__hp_out=${ansiCQuote(outFile)}\n` +
    `__hp() { ( ${record}set -euo pipefail; eval "$2" ) </dev/null >"$__hp_out"; __hp_s=$?; ` +
    "if [ -s \"$__hp_out\" ]; then printf '\\036HP %s %s B\\n' \"$1\" \"$__hp_s\"; base64 <\"$__hp_out\"; " +
    "printf '\\036END %s\\n' \"$1\"; else printf '\\036HP %s %s E\\n' \"$1\" \"$__hp_s\"; fi; }\n"
  );
}

interface Pending {
  id: number;
  resolve: (r: ShellReply) => void;
  reject: (e: Error) => void;
}

export class BackdoorShell {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private buf = "";
  /** Set while reading a base64 body: the frame it belongs to. */
  private body: { id: number; status: number; chunks: string[]; length: number; tail: string } | undefined;
  private closedWith: Error | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  // biome-ignore lint/suspicious/noExplicitAny: listeners of any event of any stream
  private readonly listeners: Array<[Readable | Writable, string, (...a: any[]) => void]>;

  constructor(
    private readonly input: Writable,
    output: Readable,
    private readonly onNoise: (line: string) => void = () => {},
  ) {
    this.listeners = [
      [output, "data", (chunk: Buffer) => this.feed(chunk.toString("latin1"))],
      [output, "close", () => this.close(new ShellClosedError("shell closed its output"))],
      [output, "error", (e: Error) => this.close(new ShellClosedError(`shell output failed: ${e.message}`))],
      [input, "error", (e: Error) => this.close(new ShellClosedError(`shell input failed: ${e.message}`))],
    ];
    for (const [stream, event, fn] of this.listeners) stream.on(event, fn);
  }

  /** Stop reading the streams (they stay open: a rebooted guest's next shell uses them) and
   *  fail what is pending with `err`. */
  detach(err: Error): void {
    for (const [stream, event, fn] of this.listeners) stream.off(event, fn);
    this.close(err);
  }

  /**
   * Define the framing function and wait until the shell answers a first command: `first`
   * (default `true`), which saves a round trip for a backend with setup of its own to do.
   */
  async init(outFile: string, timeoutMs: number, first = "true", runningFile?: string): Promise<ShellReply> {
    this.input.write(setupScript(outFile, runningFile));
    const r = await this.run(first, timeoutMs);
    if (r.status !== 0) throw new Error(`backdoor shell setup failed (status ${r.status}${r.stdout.length ? `: ${r.stdout.toString().trim()}` : ""})`);
    return r;
  }

  /**
   * Run one command. Commands run one after another; `timeoutMs` counts from when this
   * command is sent. On timeout `onTimeout` is called with the command's id (to kill what
   * runs) and the call fails.
   */
  run(cmd: string, timeoutMs: number, onTimeout?: (id: number) => void): Promise<ShellReply> {
    return this.enqueue(cmd, (id) => `__hp ${id} ${ansiCQuote(cmd)}\n`, timeoutMs, onTimeout);
  }

  /**
   * Run `cmd` in the shell itself: no subshell (a fork saved: a restored guest's first command,
   * vm/image/guest-restore-prep.ts), no `set -e` (a failure must not end the shell: `cmd` chains
   * its steps itself), stdin /dev/null, stdout discarded (the reply is the status only). What
   * it sets stays set; it cannot be killed through the kill port, so each of its waits must
   * have a timeout of its own. Needs no `__hp`: usable before the setup, or instead of it.
   */
  runInShell(cmd: string, timeoutMs: number): Promise<ShellReply> {
    return this.enqueue(cmd, (id) => `eval ${ansiCQuote(cmd)} </dev/null >/dev/null; printf '\\036HP %s %s E\\n' ${id} "$?"\n`, timeoutMs);
  }

  /** Send a raw line to the shell (run by the shell itself); nothing answers it. */
  writeLine(line: string): void {
    this.input.write(line.endsWith("\n") ? line : `${line}\n`);
  }

  private enqueue(cmd: string, line: (id: number) => string, timeoutMs: number, onTimeout?: (id: number) => void): Promise<ShellReply> {
    const p = this.queue.then(() => this.send(cmd, line, timeoutMs, onTimeout));
    this.queue = p.catch(() => {}); // the caller awaits p and sees its error; the queue just goes on
    return p;
  }

  close(err: Error): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  private send(cmd: string, line: (id: number) => string, timeoutMs: number, onTimeout?: (id: number) => void): Promise<ShellReply> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (cmd.includes("\0")) return Promise.reject(new Error("a command cannot contain a NUL byte"));
    const id = this.nextId++;
    return new Promise<ShellReply>((resolve, reject) => {
      const timer =
        timeoutMs > 0 && Number.isFinite(timeoutMs)
          ? setTimeout(() => {
              if (!this.pending.delete(id)) return;
              // Keep the id known so its late answer is recognised and dropped.
              this.pending.set(id, { id, resolve: () => {}, reject: () => {} });
              onTimeout?.(id);
              reject(new ShellTimeoutError(`timed out after ${timeoutMs / 1000} s`));
            }, timeoutMs)
          : undefined;
      this.pending.set(id, {
        id,
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.input.write(line(id));
    });
  }

  /**
   * Linear in the output: a body's chunks are kept in an array (appending to one string
   * and searching it again made 40 MB take 19 s), and only the new chunk, plus the few
   * characters before it that a split marker could start in, is searched for the end marker.
   */
  private feed(chunk: string): void {
    let s = chunk;
    while (s) {
      if (this.body) {
        const body = this.body;
        const marker = `${END}${body.id}\n`;
        const window = body.tail + s;
        const at = window.indexOf(marker);
        if (at < 0) {
          body.chunks.push(s);
          body.length += s.length;
          body.tail = window.slice(-(marker.length - 1));
          return;
        }
        // `at` counts from the start of the tail, which is the last tail.length chars already kept.
        const all = body.chunks.join("") + s;
        const end = body.length - body.tail.length + at;
        this.body = undefined;
        this.settle(body.id, body.status, Buffer.from(all.slice(0, end), "base64"));
        s = all.slice(end + marker.length);
        continue;
      }
      this.buf += s;
      s = "";
      for (;;) {
        const nl = this.buf.indexOf("\n");
        if (nl < 0) break;
        const line = this.buf.slice(0, nl).replace(/\r$/, "");
        this.buf = this.buf.slice(nl + 1);
        const f = line.indexOf(FRAME);
        if (f < 0) {
          if (line) this.onNoise(Buffer.from(line, "latin1").toString("utf8"));
          continue;
        }
        const [idS, statusS, kind] = line.slice(f + FRAME.length).split(" ");
        const id = Number(idS);
        const status = Number(statusS);
        if (kind === "B") {
          this.body = { id, status, chunks: [], length: 0, tail: "" };
          // The rest of the buffer is body: hand it to the body branch.
          s = this.buf;
          this.buf = "";
          break;
        }
        this.settle(id, status, Buffer.alloc(0));
      }
    }
  }

  private settle(id: number, status: number, stdout: Buffer): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.resolve({ status, stdout });
  }
}
