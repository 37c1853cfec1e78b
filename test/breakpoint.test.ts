// Breakpoints through the real CLI, attached to with real telnet and nc clients.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, statSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ROOT, haltpoint, watchOutput } from "./helpers/cli.ts";
import { processesMatching } from "./helpers/machine-context.ts";
import { qemuProcesses } from "./helpers/qemu.ts";
import { Peer } from "./fixtures/hooks/peer.ts";
import { emptied, settled } from "./helpers/settled.ts";
import { tempDir } from "./helpers/temp-dirs.ts";



/** One console session through netcat, typed as a person would: a line, then its answer. */
async function ncSession(port: number, lines: string[], waitFor: RegExp): Promise<string> {
  const nc = new Peer("nc", ["127.0.0.1", String(port)]);
  try {
    await nc.expect(/> $/m, 10_000);
    for (const l of lines) {
      nc.send(l + "\n");
      // The next prompt (or the goodbye of release()) ends this line's answer.
      await nc.expect(/> $|released/m, 60_000);
    }
    assert.match(nc.output, waitFor);
    return nc.output;
  } finally {
    nc.child.kill();
  }
}

// Not under /tmp: a local machine has a private /tmp of its own.
// Each is removed when the file's tests are done (they used to be left in /var/tmp).
const ticksDirs: string[] = [];
const ticksDir = (): string => {
  const d = tempDir("hp-ticks-", "/var/tmp");
  ticksDirs.push(d);
  return d;
};
after(() => {
  for (const d of ticksDirs) rmSync(d, { recursive: true, force: true });
});

const lineCount = (f: string) => (existsSync(f) ? readFileSync(f, "utf8").split("\n").length : 0);

/** When the run's worker started (its run log's `worker` line), if it is there yet: its clock starts then. */
function workerStartedAt(runLog: string): number | undefined {
  if (!existsSync(runLog)) return undefined;
  const line = readFileSync(runLog, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { event?: string; time?: string })
    .find((l) => l.event === "worker");
  return line?.time ? Date.parse(line.time) : undefined;
}

test("10 failing runs halt at once: distinct ports and socket dirs, frozen machines, each console reaches its own machine", async () => {
  const ticks = ticksDir();
  const child = haltpoint(["run", "test/fixtures/debug/token.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--repeat", "10", "--max-frozen", "10", "--jobs", "2", "--debug-port", "47100"], {
    env: { HP_TICKS_DIR: ticks },
    timeout: 180_000,
  });
  try {
    const out = watchOutput(child);
    await out.waitFor(/holding 10 breakpoints/);

    const halted = [...out.text().matchAll(/!!! token#(\d+): console: telnet 127\.0\.0\.1 (\d+)/g)].map((m) => ({ run: Number(m[1]), port: Number(m[2]) }));
    assert.equal(halted.length, 10);
    assert.equal(new Set(halted.map((h) => h.port)).size, 10, "every breakpoint has its own port");
    const dirs = [...out.text().matchAll(/!!! token#\d+: sockets: (\S+)/g)].map((m) => m[1]!);
    assert.equal(new Set(dirs).size, 10, "every breakpoint has its own socket directory");
    for (const d of dirs) assert.equal(statSync(d).mode & 0o777, 0o700, `${d} is private`);

    // `haltpoint ls` from another process sees all ten, on loopback.
    const ls = await haltpoint(["ls"]);
    assert.equal(ls.exitCode, 0);
    for (const h of halted) assert.match(ls.all, new RegExp(`${h.port}\\s+token#${h.run}\\s+\\S+\\s+127\\.0\\.0\\.1:${h.port}\\s+m`));

    // Frozen: nothing runs in the machines while halted. The fifth halted run stays frozen
    // throughout; the first four are thawed in their consoles below, and the first one's
    // ticker, running again, is the clock for how long the fifth was watched.
    const witness = join(ticks, `run${halted[4]!.run}`);
    const frozenCount = lineCount(witness);
    const tickFile = join(ticks, `run${halted[0]!.run}`);
    const before = lineCount(tickFile);

    // Each console reaches its own machine (its token is its run number), and thaw() lets it run.
    for (const h of halted.slice(0, 4)) {
      const text = await ncSession(h.port, ["m.state", "await thaw()", `"token=" + (await m.succeed("cat token")).trim()`], /token=\d+/);
      assert.match(text, /'frozen'/);
      assert.match(text, new RegExp(`token=${h.run}\\b`), `console of run ${h.run} reached its own machine`);
    }
    // The thawed machine ticks again: 20 ticks (1 s at 50 ms each) since it was frozen…
    const afterThaw = await settled(() => lineCount(tickFile), (n) => n >= before + 20, 30_000);
    assert.ok(afterThaw >= before + 20, `after thaw() the machine runs again (${before} → ${afterThaw} ticks)`);
    // …a window in which the machine still halted did not tick once.
    assert.equal(lineCount(witness), frozenCount, "a halted machine's ticker did not tick while halted");

    // attach (no telnet needed) from another process, with piped input.
    const attach = await haltpoint(["attach", String(halted[5]!.port)], { timeout: 20_000, input: "error.message\n" });
    assert.match(attach.all, /exit code 3/);

    // release one from another process; then Ctrl-C releases the rest and nothing is left behind.
    const rel = await haltpoint(["release", String(halted[1]!.port)]);
    assert.equal(rel.exitCode, 0, rel.all);
    await out.waitFor(new RegExp(`token#${halted[1]!.run}: breakpoint ${halted[1]!.port} released \\(haltpoint release\\)`));
    child.kill("SIGINT");
    const r = await child;
    assert.equal(r.exitCode, 1, "Ctrl-C that only releases breakpoints is not an interrupted run: the failures decide");
    assert.match(r.all, /10 failed/);
    assert.deepEqual(await emptied(() => processesMatching(`${ticks}/run`)), [], "no machine process left behind");
    assert.match((await haltpoint(["ls"])).all, /no halted tests/);
  } finally {
    child.kill("SIGKILL");
  }
});

test("Ctrl-C while a released failure still tears down lets it finish: its failure decides (exit 1, not 130)", async () => {
  const child = haltpoint(["run", "test/fixtures/debug/token.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--debug-port", "47150"], { env: { HP_TICKS_DIR: ticksDir() }, timeout: 60_000 });
  const killer = setTimeout(() => child.kill("SIGKILL"), 50_000);
  try {
    const out = watchOutput(child);
    const m = await out.waitFor(/!!! token#1: console: telnet 127\.0\.0\.1 (\d+)/);
    // Right after release() (once its `resumed` event is posted) the console keeps the test's
    // worker busy for 1.5 s: the run is released but not yet torn down when Ctrl-C arrives.
    // The line's own value is not waited for: the console may end (its goodbye) before the
    // REPL prints it.
    const session = ncSession(Number(m[1]), ["setTimeout(() => { const end = Date.now() + 1500; while (Date.now() < end); }, 0), release()"], /released/);
    session.catch(() => {}); // awaited below, after the Ctrl-C
    await out.waitFor(/token#1: breakpoint \d+ released/);
    child.kill("SIGINT");
    await session;
    const r = await child;
    assert.equal(r.exitCode, 1, r.all);
    assert.match(r.all, /SIGINT: starting no more tests/);
    assert.match(r.all, /token#1: FAIL .*exit code 3/, "the run keeps its own failure, not 'interrupted'");
    assert.match(r.all, /1 failed/);
  } finally {
    clearTimeout(killer);
    child.kill("SIGKILL");
  }
});

test("debug.breakpoint() halts without a failure, the global timeout waits, and the script goes on after release() in telnet", async () => {
  const child = haltpoint(["run", "test/fixtures/debug/resume.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--debug-port", "47200"], { timeout: 60_000 });
  const out = watchOutput(child);
  const killer = setTimeout(() => child.kill("SIGKILL"), 50_000);
  const m = await out.waitFor(/!!! resume#1: console: telnet 127\.0\.0\.1 (\d+)/);
  // The global timeout (3 s, counted from the worker's start) must not fire while the test is
  // halted: stay halted until an unpaused clock would have fired. The run's log says when the
  // worker started; wait until that is 3 s, plus 1 s for the orchestrator's timer, in the past.
  const runLog = join(resolve(ROOT, (await out.waitFor(/logs in (\S+)/))[1]!), "resume#1", "run.jsonl");
  const startedAt = await settled(() => workerStartedAt(runLog), (t) => t !== undefined);
  assert.ok(startedAt !== undefined, `${runLog} records the worker's start`);
  await new Promise((r) => setTimeout(r, Math.max(0, startedAt + 3000 + 1000 - Date.now())));
  const telnet = new Peer("telnet", ["127.0.0.1", m[1]!]);
  try {
      await telnet.expect(/resume#1> /, 10_000);
      telnet.send("m.state\r\n");
      await telnet.expect("'frozen'");
      telnet.send("release()\r\n");
      await telnet.expect(/released/);
  } finally {
    telnet.child.kill();
  }
  const r = await child;
  clearTimeout(killer);
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /resume#1: after the breakpoint: before/);
  assert.match(r.all, /resume#1: PASS/);
});

test("a port held by another process is skipped; --max-frozen refuses beyond its budget; --freeze-ttl releases", async () => {
  const holder = new Peer("nc", ["-l", "127.0.0.1", "47300"]);
  try {
      await settled(() => readFileSync("/proc/net/tcp", "utf8"), (t) => t.includes(":B8C4 "), 2500);
      const ticks = ticksDir();
      const r = await haltpoint(
        ["run", "test/fixtures/debug/token.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--repeat", "3", "--jobs", "3", "--max-frozen", "1", "--freeze-ttl", "3s", "--debug-port", "47300"],
        { env: { HP_TICKS_DIR: ticks }, timeout: 60_000 },
      );
      assert.equal(r.exitCode, 1, r.all);
      assert.match(r.all, /console: telnet 127\.0\.0\.1 47301/, "47300 is held by nc: the broker took the next port");
      assert.equal([...r.all.matchAll(/HALTED at breakpoint/g)].length, 1);
      assert.equal([...r.all.matchAll(/not halted: 1 test is already halted \(--max-frozen 1\)/g)].length, 2);
      assert.match(r.all, /breakpoint 47301 released \(--freeze-ttl \(3 s\) expired\)/);
      assert.match(r.all, /3 failed/);
  } finally {
    holder.child.kill();
  }
});

test("a failing qemu test halts with its guest paused; after thaw() the console drives the guest", async () => {
  const child = haltpoint(["run", "test/fixtures/debug/qemu-fails.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--debug-port", "47400"], { timeout: 180_000 });
  const out = watchOutput(child);
  const killer = setTimeout(() => child.kill("SIGKILL"), 150_000);
  const m = await out.waitFor(/!!! qemu-fails#1: console: telnet 127\.0\.0\.1 (\d+)/, 120_000);
  const text = await ncSession(
    Number(m[1]),
    ['(await vm.sendMonitorCommand("info status")).trim()', "await thaw()", '"note=" + (await vm.succeed("cat /root/note")).trim()', "release()"],
    /released/,
  );
  assert.match(text, /VM status: paused/);
  assert.match(text, /note=hello/);
  const r = await child;
  clearTimeout(killer);
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.all, /qemu-fails#1: FAIL .*command `test -e \/no\/such\/file` failed/);
  assert.deepEqual(await emptied(() => qemuProcesses()), []);
});

test("--debug-bind beyond loopback: the token is printed once, asked for first, and haltpoint attach sends it", async () => {
  const child = haltpoint(["run", "test/fixtures/debug/web.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--debug-bind", "0.0.0.0", "--debug-port", "47250"], { timeout: 60_000 });
  const killer = setTimeout(() => child.kill("SIGKILL"), 50_000);
  try {
    const out = watchOutput(child);
    const id = (await out.waitFor(/!!! web#1: HALTED at breakpoint (\d+)/))[1]!;
    const token = (await out.waitFor(/^!!! web#1: console token \(asked for first; shown only here\): (\S+)$/m))[1]!;
    await out.waitFor(/!!! web#1: release:/);
    assert.equal(out.text().split(token).length - 1, 1, "printed once");

    const guess = new Peer("nc", ["127.0.0.1", id]);
    try {
      await guess.expect("haltpoint console token: ", 10_000);
      guess.send("not-the-token\n");
      await guess.expect("haltpoint: refused: wrong console token");
      assert.doesNotMatch(guess.output, /web#1>/);
    } finally {
      guess.child.kill(); // nc stays after the server closes, as long as its stdin is open
    }
    await out.waitFor(/!!! web#1: refused a console connection from 127\.0\.0\.1:\d+: wrong console token/);
    // The console closed the refused connection, but nc (stdin still open) may stay: a
    // live child keeps this test file's process from exiting.
    guess.child.kill();

    const nc = new Peer("nc", ["127.0.0.1", id]);
    try {
      await nc.expect("haltpoint console token: ", 10_000);
      nc.send(`${token}\n6*7\n`);
      await nc.expect(/web#1> 42/);
    } finally {
      nc.child.kill();
    }
    const attach = await haltpoint(["attach", id], { input: "server.name\n" });
    assert.equal(attach.exitCode, 0, attach.all);
    assert.match(attach.stdout, /'server'/);
    assert.doesNotMatch(attach.stdout, /console token/);
    assert.equal((await haltpoint(["release", id])).exitCode, 0);
    assert.equal((await child).exitCode, 1);
  } finally {
    clearTimeout(killer);
    child.kill("SIGKILL");
  }
});
