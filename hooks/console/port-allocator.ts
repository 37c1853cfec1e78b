import type { Server } from "node:net";

// Several breakpoints can be open at once (in one orchestrator, or in several on the same
// host), each with its own console port counting up from 4444. The only reliable way to
// know that a port is free is to bind it: checking first and binding later races with
// every other allocation (in this process, other orchestrators, anything else on the host).
// So we bind, and move on when the kernel says EADDRINUSE. Within one process this is also
// what makes concurrent calls safe: two listens on one port cannot both succeed.

export interface PortAllocationOptions {
  /** First port to try. */
  start: number;
  /** Address to bind; only this one (callers pass 127.0.0.1 so consoles stay local). */
  host: string;
  /** How many consecutive ports to try before giving up (default 100). */
  maxTries?: number;
}

/** Bind `server` on the first free port from `start` on `host`; resolves with that port. */
export async function listenOnFirstFreePort(server: Server, opts: PortAllocationOptions): Promise<number> {
  const { start, host } = opts;
  const maxTries = opts.maxTries ?? 100;
  if (!Number.isInteger(start) || start < 1 || start > 65535) throw new Error(`invalid start port ${start}`);
  const last = Math.min(65535, start + maxTries - 1);
  for (let port = start; port <= last; port++) {
    const err = await tryListen(server, port, host);
    if (!err) {
      const addr = server.address();
      return typeof addr === "object" && addr ? addr.port : port;
    }
    if (err.code === "EADDRINUSE") continue;
    throw new Error(`cannot listen on ${host}:${port}: ${err.code ?? "error"}: ${err.message}`);
  }
  throw new Error(`no free port on ${host} in ${start}-${last} (all ${last - start + 1} in use)`);
}

function tryListen(server: Server, port: number, host: string): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off("listening", onListening);
      resolve(err);
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve(undefined);
    };
    server.once("error", onError);
    server.once("listening", onListening);
    // exclusive: never share a handle through the cluster primary; each bind is our own.
    server.listen({ port, host, exclusive: true });
  });
}
