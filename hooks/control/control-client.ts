import { lstatSync, readdirSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { controlDir } from "./control-paths.ts";
import { decodeReply, encodeRequest, LineSplitter, type BreakpointInfo, type ControlRequest, type ReplyFor } from "./control-protocol.ts";

// The client end of the control socket, for `haltpoint ls | attach | release`. Several
// orchestrators may run at once (several terminals, CI jobs on one host): each has its own
// socket in controlDir(), and these functions look across all of them.

/** An error talking to one orchestrator; `code` is the socket error (ECONNREFUSED, …) if any. */
export class ControlRequestError extends Error {
  override name = "ControlRequestError";
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Send one request to the orchestrator at `socketPath` and wait for its reply. */
export function controlRequest<R extends ControlRequest>(socketPath: string, req: R, timeoutMs = 3000): Promise<ReplyFor<R>> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let settled = false;
    const settle = (err: Error | undefined, reply?: ReplyFor<R>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      lines.end();
      socket.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => settle(new ControlRequestError(`no reply from orchestrator at ${socketPath} within ${timeoutMs} ms`, "ETIMEDOUT")), timeoutMs);
    const lines = new LineSplitter(
      (line) => {
        try {
          settle(undefined, checkKind(req, decodeReply(line)));
        } catch (e) {
          settle(new ControlRequestError(`orchestrator at ${socketPath}: ${(e as Error).message}`));
        }
      },
      () => settle(new ControlRequestError(`orchestrator at ${socketPath}: reply too long`)),
    );
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(encodeRequest(req)));
    socket.on("data", (chunk: string) => lines.push(chunk));
    socket.on("end", () => {
      lines.end();
      settle(new ControlRequestError(`orchestrator at ${socketPath} closed the connection without a reply`));
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      const why = e.code === "ECONNREFUSED" ? "not running (connection refused)" : e.code === "ENOENT" ? "gone (no socket)" : e.message;
      settle(new ControlRequestError(`orchestrator at ${socketPath}: ${why}`, e.code));
    });
  });
}

function checkKind<R extends ControlRequest>(req: R, reply: ReturnType<typeof decodeReply>): ReplyFor<R> {
  if (!reply.ok) return reply;
  const want = req.cmd === "ls" ? "breakpoints" : req.cmd === "save" ? "bundle" : "released";
  if (!(want in reply)) throw new Error(`unexpected reply to "${req.cmd}" (no "${want}")`);
  return reply as ReplyFor<R>;
}

/**
 * The control sockets of the running orchestrators. A socket that refuses connections
 * belongs to an orchestrator that died without cleaning up: it is removed and skipped.
 */
export async function listOrchestratorSockets(): Promise<string[]> {
  const dir = controlDir();
  const candidates = readdirSync(dir)
    .filter((name) => name.endsWith(".sock"))
    .map((name) => join(dir, name))
    .filter((path) => {
      try {
        return lstatSync(path).isSocket();
      } catch {
        return false;
      }
    });
  const live = await Promise.all(candidates.map(async (path) => ((await probe(path)) ? path : undefined)));
  return live.filter((p): p is string => p !== undefined).sort();
}

/** Whether something listens at `path`; a stale socket file is removed. */
function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNREFUSED") {
        try {
          unlinkSync(path);
        } catch {}
      }
      // Anything else (EACCES, a listener gone mid-probe) is not ours to judge: skip it.
      resolve(false);
    });
  });
}

export interface Located {
  socket: string;
  info: BreakpointInfo;
}

/**
 * Every breakpoint of every running orchestrator. An orchestrator that fails to answer is
 * reported in `errors` rather than failing the whole listing.
 */
export async function listBreakpoints(timeoutMs?: number): Promise<{ breakpoints: Located[]; errors: string[] }> {
  const sockets = await listOrchestratorSockets();
  const replies = await Promise.all(
    sockets.map(async (socket) => {
      try {
        const reply = await controlRequest(socket, { cmd: "ls" }, timeoutMs);
        if (!reply.ok) return { error: `orchestrator at ${socket}: ${reply.error}` };
        return { found: reply.breakpoints.map((info) => ({ socket, info })) };
      } catch (e) {
        return { error: (e as Error).message };
      }
    }),
  );
  return {
    breakpoints: replies.flatMap((r) => r.found ?? []).sort((a, b) => a.info.since - b.info.since || a.info.id.localeCompare(b.info.id)),
    errors: replies.flatMap((r) => (r.error ? [r.error] : [])),
  };
}

/** The breakpoint with id `id`, wherever it is. */
export async function findBreakpoint(id: string): Promise<Located> {
  const { breakpoints } = await listBreakpoints();
  const found = breakpoints.find((b) => b.info.id === id);
  if (!found) throw new ControlRequestError(`no breakpoint with id ${id} (haltpoint ls lists them)`);
  return found;
}
