// A real redis-server (Debian's package) per test, on a free loopback port, no disk.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, connect } from "node:net";
import { settled } from "./settled.ts";

export interface TestRedis {
  port: number;
  proc: ChildProcess;
  /** A queue address on it. */
  url(name: string, password?: string): string;
  /** Stop it (SIGKILL: what "Redis went away" looks like) and wait until it is gone. */
  kill(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const accepts = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const c = connect(port, "127.0.0.1");
    c.on("connect", () => (c.destroy(), resolve(true)));
    c.on("error", () => resolve(false));
  });

export async function startRedis(o: { password?: string } = {}): Promise<TestRedis> {
  const port = await freePort();
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...(o.password ? ["--requirepass", o.password] : [])];
  const proc = spawn("redis-server", args, { stdio: "ignore" });
  let exited = false;
  proc.on("exit", () => (exited = true));
  if (!(await settled(() => accepts(port), (ok) => ok || exited, 10_000))) throw new Error(`redis-server on port ${port} did not start`);
  return {
    port,
    proc,
    url: (name, password) => `redis://${password !== undefined ? `:${password}@` : ""}127.0.0.1:${port}/${name}`,
    kill: async () => {
      if (exited) return;
      proc.kill("SIGKILL");
      await settled(() => exited, (x) => x, 10_000);
    },
  };
}
