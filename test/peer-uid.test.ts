// The peer-uid lookup (hooks/console/peer-uid.ts) against real sockets: this process's own client,
// and `nc` run by a real second user (uid 65534 through setpriv), over IPv4, IPv6 and a
// dual-stack listener (where a v4 client shows up v4-mapped in /proc/net/tcp6).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect, createServer, type Server, type Socket } from "node:net";
import { peerUid, peerUidFromTable } from "../hooks/console/peer-uid.ts";

const NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"];

async function listen(host: string): Promise<{ server: Server; port: number; next(): Promise<Socket> }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  const port = (server.address() as { port: number }).port;
  const queue: Socket[] = [];
  const waiting: Array<(s: Socket) => void> = [];
  server.on("connection", (s) => (waiting.length ? waiting.shift()!(s) : queue.push(s)));
  return { server, port, next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((r) => waiting.push(r))) };
}

const ends = (s: Socket) => ({ localAddress: s.localAddress!, localPort: s.localPort!, remoteAddress: s.remoteAddress!, remotePort: s.remotePort! });

for (const [listenOn, dial] of [
  ["127.0.0.1", "127.0.0.1"],
  ["::1", "::1"],
  ["::", "127.0.0.1"],
] as const) {
  test(`peer uid on ${listenOn} (client dials ${dial}): ours, then uid 65534's nc`, async (t) => {
    const l = await listen(listenOn);
    t.after(() => l.server.close());
    const mine = connect({ host: dial, port: l.port });
    t.after(() => mine.destroy());
    const accepted = await l.next();
    assert.equal(await peerUid(ends(accepted)), process.getuid!());
    accepted.destroy();

    const nc = spawn("setpriv", [...NOBODY, "nc", dial, String(l.port)], { stdio: ["pipe", "ignore", "pipe"] });
    t.after(() => void nc.kill("SIGKILL"));
    const theirs = await l.next();
    assert.equal(await peerUid(ends(theirs)), 65534);
    theirs.destroy();
  });
}

test("a peer that connected and closed at once is unknown, not root (its time-wait row says uid 0)", async (t) => {
  const l = await listen("127.0.0.1");
  t.after(() => l.server.close());
  // Connect, write, close, exit: the peer's socket is gone before we look.
  const gone = spawn("setpriv", [...NOBODY, "bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${l.port}; echo hi >&3; exec 3>&-`], { stdio: "ignore" });
  const accepted = await l.next();
  await new Promise((r) => gone.once("exit", r));
  await new Promise<void>((r) => accepted.once("end", () => r()).resume());
  t.after(() => accepted.destroy());
  assert.equal(await peerUid(ends(accepted)), undefined);
});

test("a peer with no socket on this host (another host, another network namespace) has no uid", async () => {
  assert.equal(await peerUid({ localAddress: "127.0.0.1", localPort: 1, remoteAddress: "127.0.0.1", remotePort: 1 }), undefined);
});

test("the /proc/net/tcp notation: little-endian address words, hex port, the uid column", () => {
  const v4 = [
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "   0: 0100007F:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0",
    "   1: 0100007F:D431 0100007F:115C 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0000000000000000 20 4 30 10 -1",
  ].join("\n");
  const e = { localAddress: "127.0.0.1", localPort: 4444, remoteAddress: "127.0.0.1", remotePort: 0xd431 };
  assert.equal(peerUidFromTable(v4, e, false), 65534);
  const timeWait = "   2: 0100007F:D431 0100007F:115C 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000";
  assert.equal(peerUidFromTable(timeWait, e, false), undefined, "a time-wait row (uid 0, inode 0) is nobody's");
  assert.equal(peerUidFromTable(v4, { ...e, remotePort: 0xd432 }, false), undefined);
  const v6 = "   1: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF00000100007F:115C 01 00000000:00000000 00:00000000 00000000  1000        0 3 1";
  assert.equal(peerUidFromTable(v6, { ...e, localAddress: "::ffff:127.0.0.1", remoteAddress: "::ffff:127.0.0.1" }, true), 1000);
  const lo6 = "   1: 00000000000000000000000001000000:D431 00000000000000000000000001000000:115C 01 00000000:00000000 00:00000000 00000000  7        0 3 1";
  assert.equal(peerUidFromTable(lo6, { localAddress: "::1", localPort: 4444, remoteAddress: "::1", remotePort: 0xd431 }, true), 7);
});
