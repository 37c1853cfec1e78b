import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { listenOnFirstFreePort } from "../../hooks/console/port-allocator.ts";
import { Peer } from "../fixtures/hooks/peer.ts";

const HOST = "127.0.0.1";

/** A port that was free a moment ago (the kernel's choice). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, HOST, r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Whether something listens on 127.0.0.1:port, read from /proc (connecting would use up nc's one accept). */
function listening(port: number): boolean {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .some((l) => l.trim().split(/\s+/)[1] === hex && l.trim().split(/\s+/)[3] === "0A");
}

const close = (s: Server): Promise<void> => new Promise((r) => (s.listening ? s.close(() => r()) : r()));

test("a port held by another process is skipped", async (t) => {
  const held = await freePort();
  const nc = new Peer("nc", ["-l", HOST, String(held)]);
  t.after(() => nc.kill());
  const deadline = Date.now() + 5000;
  while (!listening(held)) {
    assert.equal(nc.child.exitCode, null, `nc -l ${held} exited: ${nc.output}`);
    assert.ok(Date.now() < deadline, "nc never listened");
    await new Promise((r) => setTimeout(r, 20));
  }
  const server = createServer();
  t.after(() => close(server));
  const port = await listenOnFirstFreePort(server, { start: held, host: HOST });
  assert.ok(port > held, `got ${port}, the held port was ${held}`);
  assert.deepEqual(server.address(), { address: HOST, family: "IPv4", port });
});

test("32 concurrent allocations in one process end on 32 distinct ports", async () => {
  const start = await freePort();
  const servers = Array.from({ length: 32 }, () => createServer());
  try {
    const ports = await Promise.all(servers.map((s) => listenOnFirstFreePort(s, { start, host: HOST })));
    assert.equal(new Set(ports).size, 32, `ports: ${ports.join(" ")}`);
    assert.ok(ports.every((p) => p >= start));
    for (const [i, s] of servers.entries()) assert.equal((s.address() as { port: number }).port, ports[i]);
  } finally {
    await Promise.all(servers.map(close));
  }
});

test("only the given host is bound", async () => {
  const server = createServer();
  try {
    const port = await listenOnFirstFreePort(server, { start: await freePort(), host: HOST });
    assert.equal((server.address() as { address: string }).address, HOST);
    assert.ok(port > 0);
  } finally {
    await close(server);
  }
});

test("errors other than EADDRINUSE stop the search with one clear line", async () => {
  const server = createServer();
  // 192.0.2.1 (TEST-NET-1) is not an address of this host: EADDRNOTAVAIL, not "in use".
  await assert.rejects(listenOnFirstFreePort(server, { start: 40000, host: "192.0.2.1" }), /^Error: cannot listen on 192\.0\.2\.1:40000: EADDRNOTAVAIL/);
  await close(server);
});

test("giving up after maxTries names the range", async () => {
  const holder = createServer();
  const start = await freePort();
  await new Promise<void>((r) => holder.listen(start, HOST, r));
  const server = createServer();
  try {
    await assert.rejects(listenOnFirstFreePort(server, { start, host: HOST, maxTries: 1 }), new RegExp(`no free port on 127\\.0\\.0\\.1 in ${start}-${start}`));
  } finally {
    await close(holder);
    await close(server);
  }
});
