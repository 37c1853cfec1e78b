// The control socket in real UNIX sockets: ControlServer, the client functions, and the
// ls / release command bodies, in a private XDG_RUNTIME_DIR per test.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, rmdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { controlRequest, findBreakpoint, listBreakpoints, listOrchestratorSockets } from "../../hooks/control/control-client.ts";
import { controlDir, controlSocketPath } from "../../hooks/control/control-paths.ts";
import { decodeReply, decodeRequest, encodeRequest, type BreakpointInfo, type ControlReply, type ControlRequest } from "../../hooks/control/control-protocol.ts";
import { ControlServer } from "../../hooks/control/control-server.ts";
import { formatAge, lsCommand, releaseCommand } from "../../orchestrator/commands/control.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

/** Point controlDir() at a fresh private runtime dir for this test. */
function runtimeDir(t: TestContext): string {
  const base = tempDir("hp-ctl-");
  const saved = process.env.XDG_RUNTIME_DIR;
  process.env.XDG_RUNTIME_DIR = base;
  t.after(() => {
    if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
    else process.env.XDG_RUNTIME_DIR = saved;
    rmSync(base, { recursive: true, force: true });
  });
  return base;
}

function info(id: string, over: Partial<BreakpointInfo> = {}): BreakpointInfo {
  return {
    id,
    key: `login#${id.slice(-1)}`,
    test: "login",
    run: Number(id.slice(-1)),
    since: Date.now() - 133_000,
    host: "127.0.0.1",
    port: Number(id),
    machines: ["server", "client"],
    socketDir: `/tmp/bp-${id}`,
    orchestratorPid: process.pid,
    reason: "boom",
    ...over,
  };
}

/** A broker-like handler over a set of breakpoints; records what it was asked. */
function broker(ids: string[]) {
  const held = new Map(ids.map((id) => [id, info(id)]));
  const asked: ControlRequest[] = [];
  const handler = (req: ControlRequest): ControlReply => {
    asked.push(req);
    if (req.cmd === "ls") return { ok: true, breakpoints: [...held.values()] };
    if (req.cmd === "release-all") {
      const all = [...held.keys()];
      held.clear();
      return { ok: true, released: all };
    }
    if (!held.delete(req.id)) return { ok: false, error: `no breakpoint ${req.id} here` };
    return { ok: true, released: [req.id] };
  };
  return { held, asked, handler };
}

async function serve(t: TestContext, ids: string[], path?: string) {
  const b = broker(ids);
  const server = await ControlServer.listen(b.handler, path);
  t.after(() => server.close());
  return { ...b, server };
}

/** A socket file nobody listens on: its process was SIGKILLed after binding. */
function staleSocket(path: string): void {
  const r = spawnSync(process.execPath, ["-e", "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))", path]);
  assert.equal(r.signal, "SIGKILL");
  assert.ok(statSync(path).isSocket());
}

/** Send raw text on a control socket and collect every reply line until it closes. */
function rawExchange(path: string, text: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let got = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => (got += d));
    s.on("connect", () => s.end(text));
    s.on("error", reject);
    s.on("close", () => resolve(got.split("\n").filter(Boolean)));
  });
}

const collect = () => {
  const lines: string[] = [];
  return { lines, write: (s: string) => void lines.push(s), get text() { return lines.join(""); } };
};

test("controlDir: private 0700 directory under XDG_RUNTIME_DIR, refused when unsafe", (t) => {
  const base = runtimeDir(t);
  const dir = controlDir();
  assert.equal(dir, join(base, "haltpoint"));
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(controlSocketPath(1234), join(dir, "1234.sock"));
  assert.equal(controlSocketPath(), join(dir, `${process.pid}.sock`));

  chmodSync(dir, 0o750);
  assert.throws(() => controlDir(), /refusing control socket directory .*: mode 750 lets others in \(chmod 700 /);
  chmodSync(dir, 0o701);
  assert.throws(() => controlDir(), /mode 701/);
  chmodSync(dir, 0o700);
  if (process.getuid?.() === 0) {
    chownSync(dir, 4242, 4242);
    assert.throws(() => controlDir(), /owned by uid 4242, not by you/);
    chownSync(dir, 0, 0);
  }
  rmSync(dir, { recursive: true });
  symlinkSync(base, dir);
  assert.throws(() => controlDir(), /not a directory/);
});

test("controlDir without XDG_RUNTIME_DIR is /tmp/haltpoint-<uid>", (t) => {
  runtimeDir(t);
  delete process.env.XDG_RUNTIME_DIR;
  const expected = `/tmp/haltpoint-${process.getuid!()}`;
  const existed = existsSync(expected);
  t.after(() => {
    // rmdir, not rm -r: an orchestrator started meanwhile may have put its socket there.
    if (!existed) {
      try {
        rmdirSync(expected);
      } catch {}
    }
  });
  assert.equal(controlDir(), expected);
  assert.equal(statSync(expected).mode & 0o777, 0o700);
  // An XDG_RUNTIME_DIR passed on by su/setpriv from another user, or one that does not
  // exist, is not ours: the same fallback, not a crash.
  process.env.XDG_RUNTIME_DIR = "/nonexistent/run/user/0";
  assert.equal(controlDir(), expected);
  if (process.getuid?.() === 0) {
    const foreign = tempDir("hp-foreign-run-");
    chownSync(foreign, 4242, 4242);
    process.env.XDG_RUNTIME_DIR = foreign;
    try {
      assert.equal(controlDir(), expected);
    } finally {
      rmSync(foreign, { recursive: true, force: true });
    }
  }
});

test("round trip: ls, release, errors, socket 0600, removed on close", async (t) => {
  runtimeDir(t);
  const { server, asked } = await serve(t, ["4444", "4445"]);
  assert.equal(server.path, controlSocketPath());
  assert.equal(statSync(server.path).mode & 0o777, 0o600);

  const ls = await controlRequest(server.path, { cmd: "ls" });
  assert.ok(ls.ok);
  assert.deepEqual(ls.breakpoints.map((b) => b.id), ["4444", "4445"]);
  assert.deepEqual(ls.breakpoints[0], info("4444", { since: ls.breakpoints[0]!.since }));

  assert.deepEqual(await controlRequest(server.path, { cmd: "release", id: "4444" }), { ok: true, released: ["4444"] });
  assert.deepEqual(await controlRequest(server.path, { cmd: "release", id: "4444" }), { ok: false, error: "no breakpoint 4444 here" });
  assert.deepEqual(await controlRequest(server.path, { cmd: "release-all" }), { ok: true, released: ["4445"] });
  assert.deepEqual(asked.map((r) => r.cmd), ["ls", "release", "release", "release-all"]);

  await server.close();
  assert.equal(existsSync(server.path), false);
  await assert.rejects(controlRequest(server.path, { cmd: "ls" }), /gone \(no socket\)|not running/);
});

test("a socket file that cannot be removed on close is said in one line naming it, not swallowed", async (t) => {
  if (process.getuid?.() !== 0) return t.skip("an immutable directory (chattr +i) needs root");
  const dir = tempDir("hp-ctl-imm-");
  t.after(() => {
    spawnSync("chattr", ["-i", dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const logged: string[] = [];
  const server = await ControlServer.listen(() => ({ ok: true, breakpoints: [] }), join(dir, "c.sock"), (l) => logged.push(l));
  // Nothing in an immutable directory can be removed, by root either.
  const chattr = spawnSync("chattr", ["+i", dir], { encoding: "utf8" });
  if (chattr.status !== 0) {
    await server.close();
    return t.skip(`chattr +i is not supported here: ${chattr.stderr || chattr.error?.message}`);
  }
  await server.close();
  assert.equal(existsSync(server.path), true, "the socket file is still there");
  assert.equal(logged.length, 1, logged.join("\n"));
  assert.match(logged[0]!, new RegExp(`^teardown: removing the control socket ${server.path} failed: EPERM`));
});

test("a handler that throws answers {ok:false}", async (t) => {
  runtimeDir(t);
  const server = await ControlServer.listen(() => {
    throw new Error("broker is shutting down");
  });
  t.after(() => server.close());
  assert.deepEqual(await controlRequest(server.path, { cmd: "ls" }), { ok: false, error: "broker is shutting down" });
});

test("malformed lines get an error reply and the connection goes on", async (t) => {
  runtimeDir(t);
  const { server } = await serve(t, ["4444"]);
  const replies = await rawExchange(server.path, 'not json\n{"cmd":"frob"}\n{"cmd":"release"}\n[1]\n{"cmd":"ls"}');
  assert.equal(replies.length, 5);
  const [notJson, unknown, noId, notObject, ls] = replies.map((l) => JSON.parse(l));
  assert.equal(notJson.ok, false);
  assert.match(notJson.error, /^malformed control request: not JSON \(.*\): not json$/);
  assert.match(unknown.error, /unknown cmd "frob" \(expected "ls", "release", "release-all" or "save"\)/);
  assert.match(noId.error, /"release" needs a non-empty string "id"/);
  assert.match(notObject.error, /expected a JSON object/);
  // The last request had no newline: the end of the stream completes it.
  assert.equal(ls.ok, true);
  assert.equal(ls.breakpoints[0].id, "4444");
});

test("protocol helpers validate both directions", () => {
  assert.equal(encodeRequest({ cmd: "release", id: "7" }), '{"cmd":"release","id":"7"}\n');
  assert.deepEqual(decodeRequest(' {"cmd":"ls","extra":1} '), { cmd: "ls" });
  assert.throws(() => decodeRequest(""), /empty line/);
  assert.throws(() => decodeReply('{"ok":"yes"}'), /"ok" must be true or false/);
  assert.throws(() => decodeReply('{"ok":true}'), /expected "breakpoints", "released" or "bundle"/);
  // save: an absolute bundle dir is required, and its reply carries the bundle.
  assert.deepEqual(decodeRequest('{"cmd":"save","id":"7","dir":"/tmp/b"}'), { cmd: "save", id: "7", dir: "/tmp/b" });
  assert.throws(() => decodeRequest('{"cmd":"save","id":"7","dir":"relative/b"}'), /"save" needs an absolute "dir"/);
  const saved = { ok: true, bundle: { dir: "/tmp/b", bytes: 5, ms: 1.5, skipped: ["c (stopped)"] } };
  assert.deepEqual(decodeReply(JSON.stringify(saved)), saved);
  assert.throws(() => decodeReply('{"ok":true,"bundle":{"dir":"/tmp/b"}}'), /"bundle" needs dir, bytes, ms and skipped/);
  const bad = { ...info("4444"), port: "4444" };
  assert.throws(() => decodeReply(JSON.stringify({ ok: true, breakpoints: [bad] })), /breakpoints\[0\]\.port must be a number/);
  const noMachines = { ...info("4444"), machines: [1] };
  assert.throws(() => decodeReply(JSON.stringify({ ok: true, breakpoints: [noMachines] })), /machines must be an array of strings/);
  assert.deepEqual(decodeReply('{"ok":false,"error":"x"}'), { ok: false, error: "x" });
});

test("two orchestrators in one dir: ls aggregates, find/release reach the right one", async (t) => {
  runtimeDir(t);
  const a = await serve(t, ["4444", "4446"]);
  const b = await serve(t, ["4445"], controlSocketPath(process.pid + 100_000));
  assert.deepEqual(await listOrchestratorSockets(), [a.server.path, b.server.path].sort());

  const { breakpoints, errors } = await listBreakpoints();
  assert.deepEqual(errors, []);
  assert.deepEqual(breakpoints.map((x) => x.info.id).sort(), ["4444", "4445", "4446"]);
  assert.equal((await findBreakpoint("4445")).socket, b.server.path);
  await assert.rejects(findBreakpoint("9999"), /^ControlRequestError: no breakpoint with id 9999 \(haltpoint ls lists them\)$/);

  const out = collect();
  assert.equal(await lsCommand(out), 0);
  const rows = out.text.trimEnd().split("\n");
  assert.match(rows[0]!, /^ID\s+RUN\s+AGE\s+CONSOLE\s+MACHINES$/);
  assert.equal(rows.length, 4);
  assert.match(rows.find((r) => r.startsWith("4445"))!, /^4445\s+login#5\s+2m1[34]s\s+127\.0\.0\.1:4445\s+server,client$/);

  const rel = collect();
  const err = collect();
  assert.equal(await releaseCommand("4445", rel, err), 0);
  assert.equal(rel.text, "released 4445\n");
  assert.deepEqual(b.asked.at(-1), { cmd: "release", id: "4445" });
  assert.equal(a.asked.some((r) => r.cmd === "release"), false);

  assert.equal(await releaseCommand("4445", rel, err), 1);
  assert.equal(err.text, "haltpoint release: no breakpoint with id 4445 (haltpoint ls lists them)\n");

  const all = collect();
  assert.equal(await releaseCommand({ all: true }, all, err), 0);
  assert.equal(all.text, "released 4444, 4446\n");
  const none = collect();
  assert.equal(await lsCommand(none), 0);
  assert.equal(none.text, "no halted tests\n");
});

test("stale sockets: skipped and removed by clients, replaced by a new server", async (t) => {
  runtimeDir(t);
  const stale = controlSocketPath(999_999);
  staleSocket(stale);
  const live = await serve(t, ["4444"]);
  assert.deepEqual(await listOrchestratorSockets(), [live.server.path]);
  assert.equal(existsSync(stale), false, "the stale socket file was removed");

  // An orchestrator whose pid (and so socket path) was used by a dead one takes it over.
  staleSocket(stale);
  const reborn = await serve(t, ["5555"], stale);
  assert.deepEqual((await controlRequest(stale, { cmd: "ls" })).ok, true);
  // A live one is never displaced.
  await assert.rejects(ControlServer.listen(() => ({ ok: true, breakpoints: [] }), stale), /another orchestrator is listening there/);
  await reborn.server.close();
  assert.equal(existsSync(stale), false);
});

test("a silent orchestrator times out with a clear error, and ls reports it without failing", async (t) => {
  runtimeDir(t);
  const path = controlSocketPath(process.pid + 200_000);
  const silent = createServer((s) => s.resume()); // reads, never answers
  await new Promise<void>((r) => silent.listen(path, r));
  t.after(() => new Promise<void>((r) => silent.close(() => r())));
  await assert.rejects(controlRequest(path, { cmd: "ls" }, 200), new RegExp(`no reply from orchestrator at ${path} within 200 ms`));
  const live = await serve(t, ["4444"]);
  const { breakpoints, errors } = await listBreakpoints(300);
  assert.deepEqual(breakpoints.map((b) => b.socket), [live.server.path]);
  assert.equal(errors.length, 1);
});

test("nothing running: ls says so; release of an unknown id fails with one line", async (t) => {
  runtimeDir(t);
  const out = collect();
  assert.equal(await lsCommand(out), 0);
  assert.equal(out.text, "no halted tests\n");
  const err = collect();
  assert.equal(await releaseCommand("4444", out, err), 1);
  assert.equal(err.lines.length, 1);
  assert.match(err.text, /^haltpoint release: no breakpoint with id 4444 \(haltpoint ls lists them\)\n$/);
});

test("ages read like 13s, 2m13s, 1h02m, 3d04h", () => {
  assert.equal(formatAge(13_400), "13s");
  assert.equal(formatAge(133_000), "2m13s");
  assert.equal(formatAge(3_720_000), "1h02m");
  assert.equal(formatAge(273_600_000), "3d04h");
  assert.equal(formatAge(-5), "0s");
});
