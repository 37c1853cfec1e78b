// The hybrid vsock handshake (hooks/ssh/vsock-mux.ts) and the socket that serves it
// (hooks/ssh/ssh-backdoor-socket.ts), against real UNIX sockets.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync, statSync, existsSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { Duplex, PassThrough } from "node:stream";
import { HandshakeParser, connectVsockMux, okLine, readHandshake, type VsockMuxError } from "../../hooks/ssh/vsock-mux.ts";
import { BackdoorSocket, MAX_SOCKET_PATH, type BridgeTarget } from "../../hooks/ssh/ssh-backdoor-socket.ts";
import { sleep } from "../helpers/machine-context.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

describe("HandshakeParser", () => {
  const parse = (...chunks: string[]) => {
    const p = new HandshakeParser();
    let r;
    for (const c of chunks) if ((r = p.push(Buffer.from(c, "latin1")))) return r;
    return undefined;
  };

  test("CONNECT <port>\\n asks for that port; what follows the line is kept", () => {
    assert.deepEqual(parse("CONNECT 22\n"), { kind: "connect", port: 22, rest: Buffer.alloc(0) });
    const r = parse("CONNECT 8080\nGET / HTTP/1.0\r\n");
    assert.equal(r?.kind, "connect");
    assert.equal(r?.kind === "connect" && r.port, 8080);
    assert.equal(r?.kind === "connect" && r.rest.toString(), "GET / HTTP/1.0\r\n");
    assert.equal(parse("CONNECT 4294967295\r\n")?.kind, "connect", "a vsock port is 32-bit; CRLF is tolerated");
  });

  test("a request split into single bytes is still one request", () => {
    assert.deepEqual(parse(..."CONNECT 1234\n".split("")), { kind: "connect", port: 1234, rest: Buffer.alloc(0) });
    assert.equal(parse("CONN", "ECT 5"), undefined, "incomplete: wait for more");
  });

  test("anything that cannot become CONNECT is raw: port 22, with the bytes read so far to replay", () => {
    const banner = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
    assert.deepEqual(parse(banner), { kind: "raw", port: 22, replay: Buffer.from(banner) });
    // Decided at the first byte that differs, without waiting for a newline.
    assert.deepEqual(parse("CONN", "X"), { kind: "raw", port: 22, replay: Buffer.from("CONNX") });
    assert.deepEqual(parse("connect 22\n"), { kind: "raw", port: 22, replay: Buffer.from("connect 22\n") });
  });

  test("a CONNECT that is not a valid request is invalid", () => {
    for (const bad of ["CONNECT abc\n", "CONNECT \n", "CONNECT -1\n", "CONNECT 4294967296\n", "CONNECT 22 33\n", `CONNECT ${"9".repeat(70)}\n`]) {
      assert.equal(parse(bad)?.kind, "invalid", JSON.stringify(bad));
    }
    assert.equal(parse(`CONNECT ${"1".repeat(60)}`)?.kind, "invalid", "no newline within 64 bytes");
  });

  test("the OK line", () => {
    assert.equal(okLine(1024).toString(), "OK 1024\n");
  });
});

describe("readHandshake", () => {
  test("a CONNECT that arrived while the thread was stalled past the silence timeout is still a CONNECT, not a raw client", async () => {
    const dir = tempDir("hp-vsock-stall-", "/tmp");
    const path = join(dir, "s");
    const accepted = new Promise<Socket>((resolve) => {
      const srv: Server = createServer((s) => {
        srv.close();
        resolve(s);
      }).listen(path);
    });
    const client = connect(path);
    await new Promise((r) => client.once("connect", r));
    const socket = await accepted;
    try {
      const handshake = readHandshake(socket, { silenceMs: 100, timeoutMs: 200 });
      client.write("CONNECT 22\n"); // into the kernel's buffer now
      // Stall this thread past both timers, as a loaded host does: when it runs again, the
      // timers are due and the request is waiting to be read.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400);
      const h = await handshake;
      assert.equal(h.kind, "connect", JSON.stringify(h));
      assert.equal(h.kind === "connect" && h.port, 22);
    } finally {
      client.destroy();
      socket.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A target whose port 7 is an echo service and port 22 says hello; other ports refuse. */
function echoTarget(log: string[] = []): BridgeTarget & { admitted: number[] } {
  const admitted: number[] = [];
  return {
    admitted,
    async admit(port) {
      admitted.push(port);
      return port === 666 ? "machine is frozen and thawing is off" : undefined;
    },
    async open(port): Promise<Duplex> {
      if (port === 7) {
        const p = new PassThrough();
        return p;
      }
      if (port === 22) {
        const p = new PassThrough();
        const out = new PassThrough();
        // A duplex whose reads say hello then echo upper-cased.
        const d = Duplex.from({ readable: out, writable: p });
        out.write("SSH-2.0-fake\r\n");
        p.on("data", (c: Buffer) => out.write(c.toString().toUpperCase()));
        p.on("end", () => out.end());
        return d;
      }
      log.push(`refused ${port}`);
      throw new Error(`nothing listens on port ${port}`);
    },
  };
}

/** Everything a raw client receives until the server closes (or `ms` pass). */
function rawExchange(path: string, send: string, ms = 2000): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(path);
    let data = "";
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data, closed: false });
    }, ms);
    s.on("connect", () => s.write(send));
    s.on("data", (c) => (data += c));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ data, closed: true });
    });
  });
}

function roundTrip(s: Socket, send: string, want: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    s.on("data", (c) => {
      got += c;
      if (got.length >= want) resolve(got);
    });
    s.on("error", reject);
    s.resume();
    s.write(send);
  });
}

describe("BackdoorSocket", () => {
  let dir: string;
  let path: string;
  let server: BackdoorSocket;
  const logs: string[] = [];
  const target = echoTarget();

  before(async () => {
    dir = tempDir("hp-vm-", "/tmp");
    path = join(dir, "m_host.socket");
    server = await BackdoorSocket.listen(path, target, { log: (m) => logs.push(m), silenceMs: 300 });
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the socket file is 0600", () => {
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.ok(statSync(path).isSocket());
  });

  test("CONNECT <port> gets OK <n> and then that port's bytes, both ways", async () => {
    const s = await connectVsockMux(path, 7);
    assert.equal(await roundTrip(s, "ping", 4), "ping");
    s.destroy();
  });

  test("the OK line comes before the other side's first bytes, and fits systemd-ssh-proxy's 9-byte read", async () => {
    const r = await rawExchange(path, "CONNECT 22\nabc", 300);
    assert.match(r.data, /^OK (\d+)\nSSH-2\.0-fake\r\nABC$/);
    assert.ok(r.data.indexOf("\n") + 1 <= "OK 65535\n".length);
  });

  test("a raw client (an SSH banner) goes to port 22, its first bytes replayed, no OK line", async () => {
    const r = await rawExchange(path, "SSH-2.0-client\r\n", 300);
    assert.equal(r.data, "SSH-2.0-fake\r\nSSH-2.0-CLIENT\r\n");
  });

  test("a client that says nothing is raw too (servers speak first in SSH)", async () => {
    const r = await rawExchange(path, "", 600);
    assert.equal(r.data, "SSH-2.0-fake\r\n");
  });

  test("a closed port: the connection is closed with nothing written, and the socket keeps serving", async () => {
    const r = await rawExchange(path, "CONNECT 9999\n");
    assert.deepEqual(r, { data: "", closed: true });
    await assert.rejects(connectVsockMux(path, 9999), (e: VsockMuxError) => e.code === "ECONNREFUSED" && /port 9999 is not open/.test(e.message));
    assert.ok(logs.some((l) => /port 9999: nothing listens on port 9999/.test(l)), logs.join("\n"));
    const s = await connectVsockMux(path, 7);
    assert.equal(await roundTrip(s, "still here", 10), "still here");
    s.destroy();
  });

  test("a malformed request and a refusal are closed silently too, with a reason in the log", async () => {
    assert.deepEqual(await rawExchange(path, "CONNECT nope\n"), { data: "", closed: true });
    assert.deepEqual(await rawExchange(path, "CONNECT 666\n"), { data: "", closed: true });
    assert.ok(logs.some((l) => /dropped a connection: bad port "nope"/.test(l)), logs.join("\n"));
    assert.ok(logs.some((l) => /refused a connection to port 666: machine is frozen/.test(l)), logs.join("\n"));
  });

  test("many connections at once, each its own bridge", async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => connectVsockMux(path, 7)));
    const answers = await Promise.all(clients.map((s, i) => roundTrip(s, `client ${i} `.padEnd(12, "."), 12)));
    for (const [i, a] of answers.entries()) assert.equal(a, `client ${i} `.padEnd(12, "."));
    for (const s of clients) s.destroy();
  });

  test("half-close passes through: the other side still answers after the client's EOF", async () => {
    const s = await connectVsockMux(path, 22);
    const got = await new Promise<string>((resolve) => {
      let d = "";
      s.on("data", (c) => (d += c));
      s.on("end", () => resolve(d));
      s.resume();
      s.end("bye");
    });
    assert.equal(got, "SSH-2.0-fake\r\nBYE");
    s.destroy();
  });

  test("close() cuts live bridges and removes the socket file", async () => {
    const other = await BackdoorSocket.listen(join(dir, "x_host.socket"), target);
    const s = await connectVsockMux(other.path, 7);
    const closed = new Promise((r) => s.on("end", r));
    s.resume();
    await other.close();
    await closed;
    assert.equal(existsSync(other.path), false);
  });

  test("a socket path longer than 107 bytes is refused with a clear error", async () => {
    await assert.rejects(BackdoorSocket.listen(join(dir, "x".repeat(MAX_SOCKET_PATH)), target), /over the 107-byte limit/);
  });
});

describe("connectVsockMux", () => {
  let dir: string;
  let srv: Server;
  let reply = "";
  before(async () => {
    dir = tempDir("hp-vm-", "/tmp");
    srv = createServer((s) => {
      s.once("data", () => {
        if (reply === "close") return void s.destroy();
        if (reply === "silent") return;
        s.write(reply);
      });
      s.on("error", () => {});
    });
    await new Promise<void>((r) => srv.listen(join(dir, "s"), r));
  });
  after(() => {
    srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("bytes that come with the OK line stay readable", async () => {
    reply = "OK 1\nhello";
    const s = await connectVsockMux(join(dir, "s"), 5);
    const got = await new Promise<string>((r) => s.once("data", (c) => r(String(c))).resume());
    assert.equal(got, "hello");
    s.destroy();
  });

  test("errors say what went wrong", async () => {
    reply = "NO\n";
    await assert.rejects(connectVsockMux(join(dir, "s"), 5), (e: VsockMuxError) => e.code === "EPROTO");
    reply = "close";
    await assert.rejects(connectVsockMux(join(dir, "s"), 5), (e: VsockMuxError) => e.code === "ECONNREFUSED");
    reply = "silent";
    await assert.rejects(connectVsockMux(join(dir, "s"), 5, { timeoutMs: 200 }), (e: VsockMuxError) => e.code === "ETIMEDOUT");
    await assert.rejects(connectVsockMux(join(dir, "nope"), 5), (e: VsockMuxError) => e.code === "ENOENT" && /no such socket/.test(e.message));
    await sleep(10);
  });
});
