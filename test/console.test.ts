// The breakpoint console end to end: a ConsoleServer in this (main) thread relays TCP to a
// ConsoleReplHost in a real worker thread (test/fixtures/hooks/repl-worker.mjs), and real
// clients connect to it: the `telnet` and `nc` binaries, and `haltpoint attach`'s code.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PassThrough } from "node:stream";
import { MessageChannel, Worker } from "node:worker_threads";
import { existsSync } from "node:fs";
import { ConsoleServer, type ConsoleServerOptions } from "../hooks/console/console-server.ts";
import { ControlServer } from "../hooks/control/control-server.ts";
import { attachCommand, type AttachIo } from "../orchestrator/commands/control.ts";
import { Peer } from "./fixtures/hooks/peer.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const HOST = "127.0.0.1";
// Well away from the 4444 of a real orchestrator someone may be running next to the tests.
const START_PORT = 34444;
const PROMPT = "fixture> ";

type WorkerMsg = { t: string; n?: number; counter?: number };

/** A worker serving the console fixture, its ConsoleServer, and the peers of one test. */
async function startConsole(t: { after(fn: () => Promise<void>): void }, gate: Partial<Pick<ConsoleServerOptions, "host" | "token" | "onRefused">> = {}) {
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(new URL("./fixtures/hooks/repl-worker.mjs", import.meta.url), { workerData: { port: port2 }, transferList: [port2] });
  const inbox: WorkerMsg[] = [];
  let wake = (): void => {};
  worker.on("message", (m: WorkerMsg) => {
    inbox.push(m);
    wake();
  });
  /** The next message of kind `kind` from the worker (consumed). */
  const next = async (kind: string, timeoutMs = 5000): Promise<WorkerMsg> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = inbox.findIndex((m) => m.t === kind);
      if (i >= 0) return inbox.splice(i, 1)[0]!;
      if (Date.now() > deadline) throw new Error(`no "${kind}" message from the worker`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
  };
  await next("ready", 15000);
  const server = await ConsoleServer.listen(port1, { startPort: START_PORT, host: HOST, ...gate });
  const peers: Peer[] = [];
  const client = (cmd: "telnet" | "nc", ...extra: string[]): Peer => {
    const args = cmd === "telnet" ? [HOST, String(server.tcpPort)] : [...extra, HOST, String(server.tcpPort)];
    const p = new Peer(cmd, args);
    peers.push(p);
    return p;
  };
  /** How many sessions the worker's host has now. */
  const sessions = async (): Promise<number> => {
    worker.postMessage("sessions");
    return (await next("sessions")).n!;
  };
  const until = async (what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  t.after(async () => {
    await Promise.all(peers.map((p) => p.kill()));
    await server.close();
    await worker.terminate();
  });
  return { server, worker, next, client, sessions, until };
}

test("telnet: banner, expressions, top-level await, errors keep the session", async (t) => {
  const c = await startConsole(t);
  const tel = c.client("telnet");
  await tel.expect("haltpoint breakpoint 4444: fixture failed");
  await tel.expect(PROMPT);
  tel.send("1+1\n");
  assert.match(await tel.expect(PROMPT), /^2\r?\n/);
  tel.send('await server.succeed("dmesg | tail")\n');
  assert.match(await tel.expect(PROMPT), /^'ran: dmesg \| tail'\r?\n/);
  tel.send('await server.fail("false")\n');
  assert.match(await tel.expect(PROMPT), /^Uncaught Error: command failed: false/);
  tel.send("notDefined.x\n");
  assert.match(await tel.expect(PROMPT), /^Uncaught ReferenceError: notDefined is not defined/);
  tel.send("throw new TypeError('thrown')\n");
  assert.match(await tel.expect(PROMPT), /^Uncaught TypeError: thrown/);
  // A rejection nobody awaits must not take the worker (and the breakpoint) down either.
  tel.send("void Promise.reject(new Error('unawaited'))\n");
  await tel.expect("Uncaught Error: unawaited");
  await tel.expect(PROMPT);
  tel.send("error.message\n");
  assert.match(await tel.expect(PROMPT), /'the test's failure'|"the test's failure"/);
  // The session is alive after all of it, and multi-line input still works.
  tel.send("function f() {\nreturn 6 * 7 }\nf()\n");
  await tel.expect(/42\r?\n/);
  assert.equal(await c.sessions(), 1);
});

test("nc: output lines end in CR LF, and CR LF / CR NUL input is understood", async (t) => {
  const c = await startConsole(t);
  const nc = c.client("nc");
  await nc.expect(PROMPT);
  nc.send("'a' + 'b'\r\n");
  await nc.expect("'ab'");
  nc.send("[1,2].length\r\0");
  await nc.expect("2\r\n");
  nc.send("'x'.repeat(3)\r");
  await nc.expect("'xxx'");
  // Every LF the console wrote is preceded by CR (a telnet client would staircase a bare LF).
  assert.doesNotMatch(nc.output, /[^\r]\n/);
});

test("telnet IAC negotiation is stripped; `mode character` gets a terminal REPL", async (t) => {
  const c = await startConsole(t);
  const tel = c.client("telnet");
  await tel.expect(PROMPT);
  // ^] enters telnet's command mode; `mode character` sends IAC DO SGA, IAC DO ECHO. One write,
  // no pause: telnet hands what follows the escape in the same read to its command mode, and
  // reads the line from its input otherwise (checked against a byte-recording server: only the
  // two commands arrive, never the text, sent together or apart).
  tel.send("\x1dmode character\n");
  await tel.expect(PROMPT); // the terminal REPL's prompt
  tel.send("6*7\r");
  // The console echoes what is typed now (telnet stopped echoing locally) and answers.
  await tel.expect("6*7");
  await tel.expect("42");
  assert.doesNotMatch(tel.output, /\xff/, "no raw telnet commands reach the client's screen");
  assert.equal(await c.sessions(), 1);
});

test("two sessions are independent REPLs sharing the same context; .exit closes one", async (t) => {
  const c = await startConsole(t);
  const a = c.client("telnet");
  const b = c.client("nc");
  await a.expect(PROMPT);
  await b.expect(PROMPT);
  a.send("shared.counter = 41; let onlyInA = 1\n");
  await a.expect(PROMPT);
  b.send("++shared.counter\n");
  await b.expect("42");
  b.send("typeof onlyInA\n");
  await b.expect("'undefined'");
  a.send("shared.counter\n");
  await a.expect("42");
  assert.equal(await c.sessions(), 2);

  a.send(".exit\n");
  await a.expect("Connection closed by foreign host.");
  await a.waitExit();
  await c.until("the server forgets the closed session", () => c.server.connections === 1);
  b.send("shared.counter + 1\n");
  await b.expect("43");
  assert.equal(await c.sessions(), 1);
});

test("a client that disconnects closes only its session; the console keeps serving", async (t) => {
  const c = await startConsole(t);
  const first = c.client("nc");
  await first.expect(PROMPT);
  await first.kill();
  await c.until("the session is closed in the worker", async () => (await c.sessions()) === 0);
  assert.equal(c.server.connections, 0);
  const again = c.client("telnet");
  await again.expect(PROMPT);
  again.send("'still here'\n");
  await again.expect("'still here'");
});

test("a half-closed client (nc -N) gets every answer, in order, then the console closes", async (t) => {
  const c = await startConsole(t);
  const nc = c.client("nc", "-N");
  nc.send('await server.succeed("one")\n2+2\nawait server.succeed("three")\nshared.counter = 7\n');
  nc.endInput();
  assert.equal(await nc.waitExit(), 0);
  const out = nc.output;
  const order = ["'ran: one'", "4", "'ran: three'", "7"].map((s) => out.indexOf(`${PROMPT}${s}\r\n`));
  assert.ok(order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1]!)), `answers out of order:\n${out}`);
  await c.until("the session is gone", async () => (await c.sessions()) === 0);
});

test("release() in the console reaches the worker and ends every session", async (t) => {
  const c = await startConsole(t);
  const a = c.client("telnet");
  const b = c.client("nc");
  await a.expect(PROMPT);
  await b.expect(PROMPT);
  a.send("release()\n");
  await c.next("released");
  await a.expect("breakpoint released");
  await b.expect("breakpoint released");
  await a.waitExit();
  // netcat-openbsd leaves only once its stdin is done too, even after the server closed.
  b.endInput();
  await b.waitExit();
  await c.until("the server has no clients", () => c.server.connections === 0);
});

test("ConsoleServer.close() says goodbye, ends clients and stops listening", async (t) => {
  const c = await startConsole(t);
  const a = c.client("telnet");
  await a.expect(PROMPT);
  await c.server.close("console closed by the test");
  await a.expect("console closed by the test");
  await a.waitExit();
  const refused = await new Promise<string>((resolve) => {
    const s = connect(c.server.tcpPort, HOST);
    s.on("connect", () => {
      s.destroy();
      resolve("connected");
    });
    s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
  });
  assert.equal(refused, "ECONNREFUSED");
  // The channel is closed too: the worker's host has ended its sessions.
  await c.until("the worker's sessions end", async () => (await c.sessions()) === 0);
});

/** A ControlServer in a private XDG_RUNTIME_DIR that lists one breakpoint: this console. */
async function withBreakpoint(t: { after(fn: () => Promise<void>): void }, tcpPort: number, extra: { token?: string } = {}) {
  const dir = tempDir("hp-attach-");
  const savedXdg = process.env.XDG_RUNTIME_DIR;
  process.env.XDG_RUNTIME_DIR = dir;
  const info = {
    id: String(tcpPort),
    key: "fixture#1",
    test: "fixture",
    run: 1,
    since: Date.now(),
    host: HOST,
    port: tcpPort,
    machines: ["server"],
    socketDir: dir,
    orchestratorPid: process.pid,
    reason: "fixture failed",
    ...extra,
  };
  const control = await ControlServer.listen((req) => (req.cmd === "ls" ? { ok: true, breakpoints: [info] } : { ok: false, error: "no" }));
  t.after(async () => {
    await control.close();
    if (savedXdg === undefined) delete process.env.XDG_RUNTIME_DIR;
    else process.env.XDG_RUNTIME_DIR = savedXdg;
    rmSync(dir, { recursive: true, force: true });
  });
  return { info, dir };
}

test("haltpoint attach (piped stdin) runs lines and returns when the console closes", async (t) => {
  const c = await startConsole(t);
  const { info } = await withBreakpoint(t, c.server.tcpPort);
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  let out = "";
  stdout.on("data", (d: Buffer) => (out += d.toString()));
  const errs: string[] = [];
  const io = { stdin, stdout, stderr: { write: (s: string) => errs.push(s) } } as unknown as AttachIo;
  const status = attachCommand(info.id, io);
  stdin.end('await server.succeed("uptime")\n21*2\n');
  assert.equal(await status, 0, errs.join(""));
  assert.match(out, /fixture failed/);
  assert.match(out, /'ran: uptime'\r\n[\s\S]*42\r\n/);
  assert.equal(await attachCommand("nope", io), 1);
  assert.match(errs.join(""), /no breakpoint with id nope \(haltpoint ls lists them\)/);
});

test("haltpoint attach on a TTY: raw mode, line editing and history, Ctrl-D leaves", async (t) => {
  const c = await startConsole(t);
  const { info, dir } = await withBreakpoint(t, c.server.tcpPort);
  const cli = fileURLToPath(new URL("./fixtures/hooks/attach-cli.ts", import.meta.url));
  // script(1) gives the attach process a pseudo-terminal; our pipe is its keyboard.
  const cmd = `${process.execPath} --import tsx ${cli} ${info.id}`;
  const tty = new Peer("script", ["-qfec", cmd, "/dev/null"], { env: { ...process.env, XDG_RUNTIME_DIR: dir, TERM: "dumb" } });
  t.after(() => tty.kill());
  await tty.expect("fixture failed", 15000);
  await tty.expect(PROMPT);
  tty.send("6*");
  await tty.expect("6*"); // echoed by the console: the terminal is raw, nothing echoes locally
  tty.send("7\r");
  await tty.expect("42");
  await tty.expect(PROMPT);
  tty.send("\x1b[A\r"); // arrow up: the console's history
  await tty.expect("6*7");
  await tty.expect("42");
  tty.send("\x04"); // Ctrl-D on an empty line ends the session (only the session)
  assert.equal(await tty.waitExit(), 0);
  await c.until("the session is gone", async () => (await c.sessions()) === 0);
});

const AS_NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"];

test("another user's nc is refused with one line and nothing it sends is evaluated; the owner is served", async (t) => {
  const refusals: string[] = [];
  const c = await startConsole(t, { onRefused: (m) => refusals.push(m) });
  const dir = tempDir("hp-gate-");
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const marker = join(dir, "evaluated");
  const code = `require("fs").writeFileSync(${JSON.stringify(marker)}, "x")\n`;
  const intruder = new Peer("setpriv", [...AS_NOBODY, "nc", HOST, String(c.server.tcpPort)]);
  t.after(() => intruder.kill());
  intruder.send(code);
  await intruder.expect(/haltpoint: refused: uid 65534 may not use this console: it runs code as uid \d+, and only that user and root are served/);
  assert.equal(await intruder.exited, 0);
  assert.doesNotMatch(intruder.output, /fixture failed|fixture>/, "no banner, no prompt");
  assert.equal(await c.sessions(), 0);
  assert.equal(refusals.length, 1);
  assert.match(refusals[0]!, /^refused a console connection from 127\.0\.0\.1:\d+: uid 65534 may not/);

  const owner = c.client("nc");
  await owner.expect(PROMPT);
  owner.send(code);
  owner.send("'done'\n");
  await owner.expect("'done'");
  assert.ok(existsSync(marker), "the owner's line ran");
});

test("a console beyond loopback asks for its token first: a wrong one is refused, attach sends it", async (t) => {
  const token = "s3cret-token-for-the-test";
  const refusals: string[] = [];
  const c = await startConsole(t, { host: "0.0.0.0", token, onRefused: (m) => refusals.push(m) });
  const wrong = c.client("nc");
  await wrong.expect("haltpoint console token: ");
  wrong.send("guess\n21*2\n");
  await wrong.expect("haltpoint: refused: wrong console token");
  assert.doesNotMatch(wrong.output, /42|fixture>/);
  assert.equal(refusals.length, 1);

  const intruder = new Peer("setpriv", [...AS_NOBODY, "nc", HOST, String(c.server.tcpPort)]);
  t.after(() => intruder.kill());
  intruder.send(`${token}\n21*2\n`);
  await intruder.expect("haltpoint: refused: uid 65534 may not use this console");
  assert.doesNotMatch(intruder.output, /42/);

  const right = c.client("nc");
  await right.expect("haltpoint console token: ");
  right.send(`${token}\r\n6*7\n`);
  await right.expect(/fixture> 42/);

  const { info } = await withBreakpoint(t, c.server.tcpPort, { token });
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  let out = "";
  stdout.on("data", (d: Buffer) => (out += d.toString()));
  const errs: string[] = [];
  const status = attachCommand(info.id, { stdin, stdout, stderr: { write: (s: string) => errs.push(s) } } as unknown as AttachIo);
  stdin.end("20+22\n");
  assert.equal(await status, 0, errs.join(""));
  assert.match(out, /^haltpoint breakpoint 4444/, "the token prompt is not shown");
  assert.match(out, /42\r\n/);
});

test("another user who writes and closes at once (a time-wait row reads uid 0) is refused, not taken for root", async (t) => {
  const refusals: string[] = [];
  let refused = (): void => {};
  const c = await startConsole(t, { onRefused: (m) => (refusals.push(m), refused()) });
  const dir = tempDir("hp-gate-");
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const marker = join(dir, "evaluated");
  const wasRefused = new Promise<void>((r) => (refused = r));
  const { spawn } = await import("node:child_process");
  const code = `require("fs").writeFileSync(${JSON.stringify(marker)}, "x")`;
  spawn("setpriv", [...AS_NOBODY, "bash", "-c", `exec 3<>/dev/tcp/${HOST}/${c.server.tcpPort}; echo '${code}' >&3; exec 3>&-`], { stdio: "ignore" });
  await wasRefused;
  assert.match(refusals[0]!, /uid 65534 may not use this console|cannot tell which user connected/);
  assert.equal(await c.sessions(), 0);
  assert.equal(existsSync(marker), false);
});
