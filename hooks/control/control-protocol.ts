// The control socket protocol between `haltpoint ls | attach | release` and a running
// orchestrator: newline-delimited JSON over a UNIX socket, one request line answered by one
// reply line. Text and JSON, so that `echo '{"cmd":"ls"}' | nc -U <socket>` works when
// debugging the debugger. Both sides validate what they read: the socket outlives versions
// of haltpoint, and a clear "malformed" error beats an undefined deep in a table printer.

/** One halted test, as the broker describes it. */
export interface BreakpointInfo {
  id: string;
  /** The run's key, e.g. "login#3". */
  key: string;
  test: string;
  run: number;
  /** When it halted (epoch ms). */
  since: number;
  /** The console's TCP address. */
  host: string;
  port: number;
  machines: string[];
  /** The machines the breakpoint froze (the others were not running). */
  frozen?: string[];
  /** Directory of the machines' SSH sockets. */
  socketDir: string;
  /** The machines' SSH sockets in it (from the halt event; not sent over the control socket). */
  sockets?: Array<{ machine: string; path: string }>;
  orchestratorPid: number;
  /** Why it halted: the failure's message, or "debug.breakpoint()". */
  reason: string;
  /** The console's token, when it listens beyond loopback (--debug-bind): its first line must be this. */
  token?: string;
}

export type ControlRequest = { cmd: "ls" } | { cmd: "release"; id: string } | { cmd: "release-all" } | { cmd: "save"; id: string; dir: string };

export type LsReply = { ok: true; breakpoints: BreakpointInfo[] };
export type ReleaseReply = { ok: true; released: string[] };
/** `save`: the bundle written (an absolute directory), its size in bytes and how long it took. */
export type SaveReply = { ok: true; bundle: { dir: string; bytes: number; ms: number; skipped: string[]; imageBytes?: number } };
export type ErrorReply = { ok: false; error: string };
export type ControlReply = LsReply | ReleaseReply | SaveReply | ErrorReply;

/** The reply a request gets: its own kind, or an error. */
export type ReplyFor<R extends ControlRequest> = (R extends { cmd: "ls" } ? LsReply : R extends { cmd: "save" } ? SaveReply : ReleaseReply) | ErrorReply;

/** A line longer than this is not a control message (guards a server against a flood). */
export const MAX_LINE_BYTES = 1 << 20;

export class ControlProtocolError extends Error {
  override name = "ControlProtocolError";
}

export function encodeRequest(req: ControlRequest): string {
  return `${JSON.stringify(validateRequest(req))}\n`;
}

export function encodeReply(reply: ControlReply): string {
  return `${JSON.stringify(validateReply(reply))}\n`;
}

export function decodeRequest(line: string): ControlRequest {
  return validateRequest(parse(line, "request"));
}

export function decodeReply(line: string): ControlReply {
  return validateReply(parse(line, "reply"));
}

function parse(line: string, what: string): unknown {
  const text = line.trim();
  if (!text) throw new ControlProtocolError(`malformed control ${what}: empty line`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ControlProtocolError(`malformed control ${what}: not JSON (${(e as Error).message}): ${preview(text)}`);
  }
}

const preview = (s: string): string => (s.length > 80 ? `${s.slice(0, 77)}...` : s);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function validateRequest(v: unknown): ControlRequest {
  if (!isObject(v)) throw new ControlProtocolError("malformed control request: expected a JSON object");
  switch (v.cmd) {
    case "ls":
      return { cmd: "ls" };
    case "release-all":
      return { cmd: "release-all" };
    case "release":
      if (typeof v.id !== "string" || !v.id) throw new ControlProtocolError('malformed control request: "release" needs a non-empty string "id"');
      return { cmd: "release", id: v.id };
    case "save":
      if (typeof v.id !== "string" || !v.id) throw new ControlProtocolError('malformed control request: "save" needs a non-empty string "id"');
      if (typeof v.dir !== "string" || !v.dir.startsWith("/")) throw new ControlProtocolError('malformed control request: "save" needs an absolute "dir"');
      return { cmd: "save", id: v.id, dir: v.dir };
    default:
      throw new ControlProtocolError(`malformed control request: unknown cmd ${JSON.stringify(v.cmd)} (expected "ls", "release", "release-all" or "save")`);
  }
}

function validateReply(v: unknown): ControlReply {
  const bad = (why: string): never => {
    throw new ControlProtocolError(`malformed control reply: ${why}`);
  };
  if (!isObject(v)) return bad("expected a JSON object");
  if (v.ok === false) return typeof v.error === "string" ? { ok: false, error: v.error } : bad('"error" must be a string');
  if (v.ok !== true) return bad('"ok" must be true or false');
  if ("breakpoints" in v) {
    if (!Array.isArray(v.breakpoints)) return bad('"breakpoints" must be an array');
    return { ok: true, breakpoints: v.breakpoints.map((b, i) => validateInfo(b, i, bad)) };
  }
  if ("released" in v) {
    if (!Array.isArray(v.released) || !v.released.every((x) => typeof x === "string")) return bad('"released" must be an array of strings');
    return { ok: true, released: [...(v.released as string[])] };
  }
  if ("bundle" in v) {
    const b = v.bundle;
    if (!isObject(b) || typeof b.dir !== "string" || typeof b.bytes !== "number" || typeof b.ms !== "number" || !Array.isArray(b.skipped)) return bad('"bundle" needs dir, bytes, ms and skipped');
    if (b.imageBytes !== undefined && typeof b.imageBytes !== "number") return bad('"bundle.imageBytes" must be a number');
    return { ok: true, bundle: { dir: b.dir, bytes: b.bytes, ms: b.ms, skipped: b.skipped.map(String), ...(b.imageBytes !== undefined ? { imageBytes: b.imageBytes } : {}) } };
  }
  return bad('expected "breakpoints", "released" or "bundle"');
}

const INFO_FIELDS = {
  id: "string",
  key: "string",
  test: "string",
  run: "number",
  since: "number",
  host: "string",
  port: "number",
  socketDir: "string",
  orchestratorPid: "number",
  reason: "string",
} as const;

function validateInfo(b: unknown, i: number, bad: (why: string) => never): BreakpointInfo {
  if (!isObject(b)) return bad(`breakpoints[${i}] must be an object`);
  for (const [field, type] of Object.entries(INFO_FIELDS)) {
    if (typeof b[field] !== type) bad(`breakpoints[${i}].${field} must be a ${type}`);
  }
  if (!Array.isArray(b.machines) || !b.machines.every((m) => typeof m === "string")) bad(`breakpoints[${i}].machines must be an array of strings`);
  const info = {} as Record<string, unknown>;
  for (const field of [...Object.keys(INFO_FIELDS), "machines"]) info[field] = b[field];
  if (b.token !== undefined) {
    if (typeof b.token !== "string") bad(`breakpoints[${i}].token must be a string`);
    info.token = b.token;
  }
  return info as unknown as BreakpointInfo;
}

/**
 * Splits a byte stream into lines (for both ends of the socket). Calls `onLine` per complete
 * line; `onOverflow` if a line grows past MAX_LINE_BYTES, after which it stops.
 */
export class LineSplitter {
  private buf = "";
  private dead = false;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: () => void,
  ) {}

  push(chunk: string): void {
    if (this.dead) return;
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.trim()) this.onLine(line);
      if (this.dead) return;
    }
    if (this.buf.length > MAX_LINE_BYTES) {
      this.dead = true;
      this.onOverflow();
    }
  }

  /** The stream ended: a last line without its newline still counts. */
  end(): void {
    if (!this.dead && this.buf.trim()) this.onLine(this.buf);
    this.dead = true;
  }
}
