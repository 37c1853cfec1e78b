// A QMP (QEMU Machine Protocol) client over a UNIX socket. QMP is line-delimited JSON:
// a greeting, then {"execute", "arguments", "id"} requests answered by {"return"} or
// {"error"} with the same id, interleaved with {"event"} messages.

import { EventEmitter } from "node:events";
import { connect, type Socket } from "node:net";

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

/** An error answer from QEMU: `qmpClass` is e.g. "GenericError" or "CommandNotFound". */
export class QmpError extends Error {
  override name = "QmpError";
  constructor(
    readonly command: string,
    readonly qmpClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${qmpClass}: ${desc}`);
  }
}

/** The connection ended (QEMU exited or was killed) or the client was closed. */
export class QmpClosedError extends Error {
  override name = "QmpClosedError";
}

export interface QmpStatus {
  status: string;
  running: boolean;
  singlestep?: boolean;
}

export interface QmpConnectOptions {
  /** Keep retrying a missing/refusing socket this long (QEMU creates it while starting). Default 10 s. */
  timeoutMs?: number;
  /** Stop retrying early, e.g. when the QEMU process has exited. */
  signal?: AbortSignal;
  /** ms between tries while the socket is missing or refuses; default: qmpRetryDelayMs. */
  retryMs?: number;
}

/**
 * How long QmpClient.connect waits before trying again, `elapsedMs` after its first try:
 * 2 ms for the first second, then 50 ms. QEMU listens about 25–30 ms after its spawn here; a
 * fixed 50 ms poll found it at ~55 ms, adding ~25 ms to every machine start (bench/vm's
 * breakdown, issue #26). A refused connect is a syscall or two: trying every 2 ms costs nothing
 * measurable; after a second QEMU is slow anyway (a loaded host), and 50 ms is plenty.
 */
export const qmpRetryDelayMs = (elapsedMs: number): number => (elapsedMs < 1000 ? 2 : 50);

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function connectOnce(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

// Typed `on` overloads for the EventEmitter subclass below (a declaration merge on purpose).
export interface QmpClient {
  on(name: "event", listener: (e: QmpEvent) => void): this;
  on(name: "close", listener: (err: QmpClosedError) => void): this;
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface above only narrows EventEmitter's own `on`
export class QmpClient extends EventEmitter {
  private buf = "";
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private closedWith: QmpClosedError | undefined;
  private greeted!: (v: unknown) => void;
  private readonly greeting = new Promise<unknown>((resolve) => (this.greeted = resolve));
  private pngScreendump: boolean | undefined;

  private constructor(
    readonly path: string,
    private readonly socket: Socket,
  ) {
    super();
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.feed(chunk));
    socket.on("error", () => {}); // "close" follows and rejects what is pending
    socket.on("close", () => this.shutdown(new QmpClosedError(`QMP connection ${path} closed (QEMU exited?)`)));
  }

  /** Connect (retrying until the socket accepts), read the greeting, negotiate capabilities. */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const firstTry = Date.now();
    const deadline = firstTry + timeoutMs;
    let socket: Socket | undefined;
    let lastError = "";
    while (!socket) {
      if (opts.signal?.aborted) throw new QmpClosedError(`QMP connect to ${path} aborted: ${String(opts.signal.reason ?? "")}`);
      try {
        socket = await connectOnce(path);
      } catch (e) {
        lastError = (e as NodeJS.ErrnoException).code ?? String(e);
        if (Date.now() >= deadline) throw new QmpClosedError(`QMP socket ${path} did not accept a connection within ${timeoutMs / 1000} s (${lastError}; is QEMU running?)`);
        await sleep(opts.retryMs ?? qmpRetryDelayMs(Date.now() - firstTry));
      }
    }
    const client = new QmpClient(path, socket);
    const left = Math.max(deadline - Date.now(), 1000);
    let timer: NodeJS.Timeout | undefined;
    let onClose: (err: Error) => void = () => {};
    try {
      await Promise.race([
        client.greeting,
        new Promise((_, reject) => (timer = setTimeout(() => reject(new QmpClosedError(`no QMP greeting on ${path} within ${left / 1000} s`)), left))),
        new Promise((_, reject) => client.once("close", (onClose = reject))),
      ]);
      await client.execute("qmp_capabilities");
    } catch (e) {
      client.close();
      throw e;
    } finally {
      clearTimeout(timer);
      client.off("close", onClose);
    }
    return client;
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Run a QMP command; resolves with its "return" value, rejects with QmpError or QmpClosedError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedWith) return Promise.reject(new QmpClosedError(`${this.closedWith.message}; cannot run ${command}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + "\n");
    });
  }

  /**
   * The next event named `name`. Register before triggering it: QEMU may send the
   * event before the reply to the command that caused it (STOP before `stop` returns).
   */
  waitForEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (e.event !== name) return;
        done();
        resolve(e);
      };
      const onClose = (err: Error) => {
        done();
        reject(new QmpClosedError(`${err.message} while waiting for event ${name}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`QMP event ${name} did not arrive within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off("event", onEvent);
        this.off("close", onClose);
      };
      if (this.closedWith) return onClose(this.closedWith);
      this.on("event", onEvent);
      this.once("close", onClose);
    });
  }

  /** Close the connection (QEMU keeps running). Pending commands are rejected. */
  close(): void {
    this.shutdown(new QmpClosedError(`QMP connection ${this.path} closed by haltpoint`));
    this.socket.destroy();
  }

  // --- convenience -------------------------------------------------------------

  async stop(): Promise<void> {
    await this.execute("stop");
  }

  async cont(): Promise<void> {
    await this.execute("cont");
  }

  /** Ask QEMU to exit now. Resolves when it acknowledged or closed the connection. */
  async quit(): Promise<void> {
    try {
      await this.execute("quit");
    } catch (e) {
      if (!(e instanceof QmpClosedError)) throw e;
    }
  }

  /** ACPI power button press; the guest decides what to do with it. */
  async systemPowerdown(): Promise<void> {
    await this.execute("system_powerdown");
  }

  /** Link up/down of a NIC (device or netdev id), as the guest sees it. */
  async setLink(name: string, up: boolean): Promise<void> {
    await this.execute("set_link", { name, up });
  }

  /** An HMP command line (what `sendMonitorCommand` sends); returns its text output. */
  humanMonitorCommand(commandLine: string): Promise<string> {
    return this.execute<string>("human-monitor-command", { "command-line": commandLine });
  }

  queryStatus(): Promise<QmpStatus> {
    return this.execute<QmpStatus>("query-status");
  }

  /**
   * Save the screen to `file` (a path QEMU can write). PNG where this QEMU supports it
   * (7.1+ built with libpng, as Debian's 7.2 is), else PPM; returns the format written.
   */
  async screendump(file: string, format?: "png" | "ppm"): Promise<"png" | "ppm"> {
    const want = format ?? (this.pngScreendump === false ? "ppm" : "png");
    if (want === "ppm") {
      await this.execute("screendump", { filename: file });
      return "ppm";
    }
    try {
      await this.execute("screendump", { filename: file, format: "png" });
      this.pngScreendump = true;
      return "png";
    } catch (e) {
      // Older QEMU: "Parameter 'format' is unexpected"; no libpng: "PNG format not supported".
      if (format || !(e instanceof QmpError) || !/format|png/i.test(e.desc)) throw e;
      this.pngScreendump = false;
      await this.execute("screendump", { filename: file });
      return "ppm";
    }
  }

  // --- protocol ----------------------------------------------------------------

  private feed(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) this.dispatch(line);
    }
  }

  private dispatch(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // not QMP; nothing sensible to do with it
    }
    if ("QMP" in msg) return this.greeted(msg.QMP);
    if (typeof msg.event === "string") {
      const e: QmpEvent = {
        event: msg.event,
        data: (msg.data as Record<string, unknown>) ?? {},
        timestamp: msg.timestamp as QmpEvent["timestamp"],
      };
      this.emit("event", e);
      return;
    }
    const id = typeof msg.id === "number" ? msg.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p) return;
    this.pending.delete(id!);
    if ("error" in msg) {
      const err = msg.error as { class?: string; desc?: string };
      p.reject(new QmpError(p.command, err.class ?? "GenericError", err.desc ?? "unknown error"));
    } else {
      p.resolve(msg.return);
    }
  }

  private shutdown(err: QmpClosedError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const p of this.pending.values()) p.reject(new QmpClosedError(`${err.message}; no reply to ${p.command}`));
    this.pending.clear();
    this.emit("close", err);
  }
}
