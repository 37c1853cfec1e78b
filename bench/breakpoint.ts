// bench/breakpoint: how fast a failure becomes an attachable breakpoint, and how fast the
// broker registers many at once.   npm run bench:breakpoint
//   (HP_BENCH_FAILURES, HP_BENCH_LOOKUPS; HP_BENCH_SMOKE=1: 3 and 20)
import { rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MessageChannel } from "node:worker_threads";
import { applyV8Flags } from "../orchestrator/v8-flags.ts";
import { runCommand } from "../orchestrator/commands/run.ts";
import { BreakpointBroker } from "../hooks/breakpoints/breakpoint-broker.ts";
import { ConsoleServer } from "../hooks/console/console-server.ts";
import { peerUid } from "../hooks/console/peer-uid.ts";
import { connect, type Socket } from "node:net";
import { readFileSync } from "node:fs";
import type { PlannedRun } from "../orchestrator/selection/plan.ts";
import type { WorkerEvent } from "../common/events.ts";
import { knob } from "./smoke.ts";
import { scratchDir } from "./scratch.ts";
import { fmt, percentile, printTable } from "./table.ts";

applyV8Flags(); // as the CLI runs (orchestrator/v8-flags.ts)

const FAILURES = knob("HP_BENCH_FAILURES", 50, 3);
const AT_ONCE = 32;
const scratch = scratchDir("hp-bbp-");

// 1. End to end: the failing command's log event (stamped in the worker) to the moment the
//    terminal reporter would print the attach lines (the broker's onBreakpoint).
const failedAt = new Map<string, number>();
const latencies: number[] = [];
const status = await runCommand({
  paths: [fileURLToPath(new URL("./fixtures/breakpoint/three-fail.vmtest.ts", import.meta.url))],
  jobs: 2,
  backend: "local",
  repeat: FAILURES,
  untilFail: false,
  quiet: true,
  abortGrace: 10,
  logDir: join(scratch, "logs"),
  terminal: false,
  debugHook: true,
  debugPort: 46000,
  maxFrozen: FAILURES,
  freezeTtl: 0.05, // release each breakpoint right after it is registered
  reporters: [
    {
      report: (e) => {
        if (e.kind === "worker-event" && e.event.t === "log" && e.event.msg === "must succeed: false") failedAt.set(e.run.key, e.event.time);
        if (e.kind === "breakpoint") latencies.push(Date.now() - failedAt.get(e.run.key)!);
      },
    },
  ],
});
if (status !== 1 || latencies.length !== FAILURES) throw new Error(`expected ${FAILURES} halts, got ${latencies.length} (status ${status})`);
latencies.sort((a, b) => a - b);

// 2. The broker alone: 32 halts registered at the same moment.
const broker = new BreakpointBroker({ startPort: 46100, host: "127.0.0.1", maxFrozen: AT_ONCE, ttlMs: 60_000, socketRoot: join(scratch, "sockets") }, () => {});
const fakeRun = (i: number): PlannedRun => ({ key: `t#${i}`, index: i, test: { file: "f", name: "t", nodes: [], globalTimeout: 60, enableDebugHook: true } });
const t0 = performance.now();
const infos = await Promise.all(
  Array.from({ length: AT_ONCE }, (_, i) => {
    const consoleChannel = new MessageChannel();
    const task = new MessageChannel();
    task.port2.on("message", () => {});
    const e = { t: "halt", time: Date.now(), kind: "failure", machines: ["m"], frozen: ["m"], console: consoleChannel.port2 } as Extract<WorkerEvent, { t: "halt" }>;
    return broker.register(fakeRun(i), e, task.port1).finally(() => task.port2.close());
  }),
);
const registerMs = performance.now() - t0;
const ports = new Set(infos.map((i) => i?.port));
await broker.close();
if (ports.size !== AT_ONCE) throw new Error(`ports were not distinct: ${[...ports].join(",")}`);

// 3. The attach path's gate (issue #10): the peer-uid lookup alone, on real accepted
//    connections, and a console's connect → first byte with the gate in it (the channel's other
//    end answers every session at once, so what is left is TCP, the gate and the relay).
const LOOKUPS = knob("HP_BENCH_LOOKUPS", 500, 20);
const { port1: consoleEnd, port2: replEnd } = new MessageChannel();
replEnd.on("message", (m: { t: string; session: number }) => {
  if (m.t === "open") replEnd.postMessage({ t: "data", session: m.session, data: new Uint8Array([104, 105]) });
});
const gated = await ConsoleServer.listen(consoleEnd, { startPort: 46200, host: "127.0.0.1" });
const lookupMs: number[] = [];
const connectMs: number[] = [];
const accepted: Socket[] = [];
for (let i = 0; i < LOOKUPS; i++) {
  const t = performance.now();
  const c = connect({ host: "127.0.0.1", port: gated.tcpPort });
  await new Promise<void>((r) => c.once("data", () => r()));
  connectMs.push(performance.now() - t);
  // The same lookup the gate made, timed on its own (this client's socket, seen from the server side).
  const ends = { localAddress: "127.0.0.1", localPort: gated.tcpPort, remoteAddress: "127.0.0.1", remotePort: c.localPort! };
  const t2 = performance.now();
  if ((await peerUid(ends)) !== process.getuid!()) throw new Error("peer uid lookup failed");
  lookupMs.push(performance.now() - t2);
  accepted.push(c);
  if (accepted.length >= 50) for (const s of accepted.splice(0)) s.destroy();
}
for (const s of accepted) s.destroy();
const tcpRows = readFileSync("/proc/net/tcp", "utf8").split("\n").length - 2 + readFileSync("/proc/net/tcp6", "utf8").split("\n").length - 2;
await gated.close();
replEnd.close();
lookupMs.sort((a, b) => a - b);
connectMs.sort((a, b) => a - b);

printTable(
  "bench/breakpoint",
  ["measure", "n", "median ms", "p95 ms", "max ms"],
  [
    ["failing command → attach lines printed (3 local machines frozen)", FAILURES, fmt(percentile(latencies, 0.5), 0), fmt(percentile(latencies, 0.95), 0), fmt(latencies.at(-1)!, 0)],
    [`${AT_ONCE} breakpoints registered at once (all ports distinct)`, AT_ONCE, "—", "—", fmt(registerMs, 0) + " total"],
    [`attach: peer-uid lookup in /proc/net/tcp{,6} (${tcpRows} sockets there)`, LOOKUPS, fmt(percentile(lookupMs, 0.5), 3), fmt(percentile(lookupMs, 0.95), 3), fmt(lookupMs.at(-1)!, 3)],
    ["attach: console connect → first byte, gate included", LOOKUPS, fmt(percentile(connectMs, 0.5), 3), fmt(percentile(connectMs, 0.95), 3), fmt(connectMs.at(-1)!, 3)],
  ],
);
rmSync(scratch, { recursive: true, force: true });
