import type { MessagePort } from "node:worker_threads";

// The messages of the console channel: a MessagePort dedicated to one breakpoint, between
// the main thread (which owns the TCP listener, see console-server.ts) and the halted
// test's worker (which runs the REPLs, see console-repl.ts). One channel carries any number
// of console sessions, one per TCP connection, told apart by `session`.
//
// A port of its own rather than the task's event port: console bytes are chatty, and the
// task port's listener (reporters, ledger) should not see or have to skip them.
//
// Sessions are opened only by the main thread. Either side may close one: the main thread
// when its client disconnects or half-closes (the worker then finishes what is being
// evaluated and answers with its own close), the worker after `.exit` / Ctrl-D or when the
// breakpoint is released. Data is raw bytes as the client sent them / should receive them;
// telnet framing is the worker's business (telnet.ts).

/** main → worker */
export type ConsoleRequest =
  | { t: "open"; session: number }
  | { t: "data"; session: number; data: Uint8Array }
  | { t: "close"; session: number };

/** worker → main */
export type ConsoleReply = { t: "data"; session: number; data: Uint8Array } | { t: "close"; session: number };

const isSession = (s: unknown): s is number => typeof s === "number" && Number.isInteger(s) && s >= 0;

function shape(m: unknown): { t: unknown; session: unknown; data?: unknown } | undefined {
  return typeof m === "object" && m !== null ? (m as { t: unknown; session: unknown }) : undefined;
}

/** Whether a message received by the worker is a ConsoleRequest (anything else is ignored). */
export function isConsoleRequest(m: unknown): m is ConsoleRequest {
  const o = shape(m);
  if (!o || !isSession(o.session)) return false;
  if (o.t === "open" || o.t === "close") return true;
  return o.t === "data" && o.data instanceof Uint8Array;
}

/** Whether a message received by the main thread is a ConsoleReply. */
export function isConsoleReply(m: unknown): m is ConsoleReply {
  const o = shape(m);
  if (!o || !isSession(o.session)) return false;
  if (o.t === "close") return true;
  return o.t === "data" && o.data instanceof Uint8Array;
}

/**
 * Post bytes of one session, transferring a private copy. The copy matters: a Buffer read
 * from a socket is usually a slice of a shared 8 KiB pool, and structured clone would copy
 * (or transfer would steal) the whole pool rather than this slice.
 */
export function postData(port: MessagePort, session: number, bytes: Uint8Array | string): void {
  const data = typeof bytes === "string" ? new Uint8Array(Buffer.from(bytes, "utf8")) : new Uint8Array(bytes);
  const msg: ConsoleRequest & ConsoleReply = { t: "data", session, data };
  port.postMessage(msg, [data.buffer]);
}

export function postOpen(port: MessagePort, session: number): void {
  port.postMessage({ t: "open", session } satisfies ConsoleRequest);
}

export function postClose(port: MessagePort, session: number): void {
  port.postMessage({ t: "close", session } satisfies ConsoleRequest & ConsoleReply);
}

/** A received Uint8Array as a Buffer, without copying. */
export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
