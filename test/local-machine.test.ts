// The Machine API on the local backend, against real sandbox shells.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { LocalMachine } from "../vm/local/local-machine.ts";
import { ConnectionLostError, MachineError, NotSupportedError } from "../vm/errors.ts";
import { buildTestContext } from "../worker/test-context.ts";
import type { DebugApi } from "../index.ts";
import type { VmMachine } from "../vm/types.ts";
import { execa } from "execa";
import { isAlive, processesMatching, testMachineContext } from "./helpers/machine-context.ts";
import { tickerLoop, tickerShells } from "./helpers/ticker.ts";
import { emptied, settled } from "./helpers/settled.ts";

describe("local machine", () => {
  const env = testMachineContext();
  const m = new LocalMachine("server", {}, env.ctx);

  before(async () => {
    await m.start();
  });
  after(async () => {
    await m.cleanup();
    env.cleanup();
  });

  test("runs in its own directory, with its own hostname where namespaces allow", async () => {
    assert.equal((await m.succeed("pwd")).trim(), m.dir);
    assert.equal((await m.succeed("echo $HOME")).trim(), m.dir);
    const host = (await m.succeed("hostname")).trim();
    const nsOk = (await m.execute("test $$ -lt 100")).status === 0; // small PIDs: its own PID namespace
    if (nsOk) assert.equal(host, "server");
  });

  test("where namespaces allow, each machine has a private /tmp", async (t) => {
    if ((await m.execute("test $$ -lt 100")).status !== 0) return t.skip("no namespaces here");
    const other = new LocalMachine("other", {}, env.ctx);
    await other.start();
    try {
      const name = `hp-private-${process.pid}`;
      await m.succeed(`echo server > /tmp/${name}`);
      await other.succeed(`echo other > /tmp/${name}`);
      assert.equal(await m.succeed(`cat /tmp/${name}`), "server\n");
      assert.equal(await other.succeed(`cat /tmp/${name}`), "other\n");
      assert.equal(existsSync(`/tmp/${name}`), false, "the host's /tmp is untouched");
      assert.equal((await other.succeed("stat -c %a /tmp")).trim(), "1777");
      assert.equal((await other.succeed("hostname")).trim(), "other");
    } finally {
      await other.cleanup();
    }
  });

  test("execute returns exact status and stdout; quotes, newlines and NUL bytes round-trip", async () => {
    assert.deepEqual(await m.execute("exit 3"), { status: 3, stdout: "" });
    const r = await m.execute(`printf '%s\\n' "it's" 'a "b"' ; printf 'x\\0y'`, { encoding: "buffer" });
    assert.deepEqual(r.stdout, Buffer.from("it's\na \"b\"\nx\0y"));
    const multi = await m.succeed("a=1\nb=2\necho $((a+b))");
    assert.equal(multi, "3\n");
  });

  test("10 MB of output round-trips exactly", async () => {
    const r = await m.execute("head -c 10000000 /dev/urandom | tee blob | sha256sum | cut -d' ' -f1 > blob.sum; cat blob", { encoding: "buffer" });
    assert.equal(r.stdout.length, 10_000_000);
    const want = readFileSync(join(m.dir, "blob.sum"), "utf8").trim();
    assert.equal(createHash("sha256").update(r.stdout).digest("hex"), want);
  });

  test("succeed and fail assert the status, naming the machine and the command", async () => {
    assert.equal(await m.succeed("echo a", "echo b"), "a\nb\n");
    await assert.rejects(m.succeed("false"), (e: Error) => e instanceof MachineError && /machine server: command `false` failed \(exit code 1\)/.test(e.message));
    assert.equal(await m.fail("echo nope; exit 2"), "nope\n");
    await assert.rejects(m.fail("true"), /machine server: command `true` unexpectedly succeeded/);
  });

  test("a command that exceeds its timeout fails with the command named, and the machine goes on", async () => {
    await assert.rejects(m.execute("sleep 30", { timeout: 0.5 }), /machine server: command `sleep 30` timed out after 0.5 s/);
    assert.equal(await m.succeed("echo alive"), "alive\n");
  });

  test("waitUntilSucceeds / waitUntilFails / waitForFile poll until the state changes", async () => {
    await m.succeed("rm -f flag; (sleep 1.2; touch flag) >/dev/null 2>&1 &");
    await m.waitForFile("flag", { timeout: 10 });
    assert.equal(await m.waitUntilSucceeds("cat flag && echo there", { timeout: 5 }), "there\n");
    await m.succeed("(sleep 1.2; rm flag) >/dev/null 2>&1 &");
    await m.waitUntilFails("test -e flag", { timeout: 10 });
    await assert.rejects(m.waitUntilSucceeds("false", { timeout: 1.5 }), /machine server: timed out after 1.5 s waiting for `false` to succeed \(last exit code 1\)/);
  });

  test("waitForOpenPort / waitForClosedPort see a real listener", async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    await m.waitForOpenPort(port, { timeout: 5 });
    await new Promise((r) => srv.close(r));
    await m.waitForClosedPort(port, { timeout: 5 });
    await assert.rejects(m.waitForOpenPort(port, { timeout: 1 }), /timed out after 1 s waiting for TCP port 127.0.0.1:\d+ to open/);
  });

  test("waitForConsoleText matches what the machine prints on its console (stderr)", async () => {
    const wait = m.waitForConsoleText(/ready: (\d+)/, { timeout: 5 });
    await m.succeed("(sleep 0.3; echo 'ready: 42' >&2) &");
    assert.equal(await wait, "ready: 42");
    assert.match(m.consoleLog(), /ready: 42/);
    assert.equal(m.getConsoleLog(), m.consoleLog(), "NixOS get_console_log, by its name");
    await assert.rejects(m.waitForConsoleText("never-printed", { timeout: 0.5 }), /timed out after 0.5 s waiting for \/never-printed\/ on the console/);
    const logged = await settled(() => readFileSync(env.ctx.consolePath("server")!, "utf8"), (t) => /ready: 42/.test(t));
    assert.match(logged, /ready: 42/, "the console is also in its own log file");
  });

  test("copyToMachine / copyFromMachine move files and directories", async () => {
    const src = join(env.root, "src");
    mkdirSync(join(src, "sub"), { recursive: true });
    writeFileSync(join(src, "sub", "f.bin"), Buffer.from([0, 1, 2, 255]));
    await m.copyToMachine(src, "inside/copied");
    assert.deepEqual([...(await m.execute("cat inside/copied/sub/f.bin", { encoding: "buffer" })).stdout], [0, 1, 2, 255]);
    await m.succeed("mkdir -p report && echo result > report/r.txt");
    const got = await m.copyFromMachine("report", join(env.root, "back"));
    assert.equal(readFileSync(join(got, "r.txt"), "utf8"), "result\n");
    // NixOS copy_from_host and copy_from_host_via_shell, by their names: a file to a path whose
    // directories do not exist yet.
    await m.copyFromHost(join(src, "sub", "f.bin"), "deep/a/f1.bin");
    await m.copyFromHostViaShell(join(src, "sub", "f.bin"), "deep/b/f2.bin");
    assert.equal(await m.succeed("od -An -tu1 deep/a/f1.bin deep/b/f2.bin | tr -s ' ' | tr -d '\\n'"), " 0 1 2 255 0 1 2 255");
  });

  test("freeze stops everything in the machine until thaw", async () => {
    await m.succeed(`rm -f ticks; bash -c '${tickerLoop("in-machine", "ticks")}' >/dev/null 2>&1 &`);
    const file = join(m.dir, "ticks");
    const ticks = () => (existsSync(file) ? readFileSync(file, "utf8").split("\n").length - 1 : 0);
    assert.ok((await settled(ticks, (n) => n >= 3)) >= 3, "the ticker ticks");
    await m.freeze();
    assert.equal(m.state, "frozen");
    // Frozen is stopped: the ticker's shell is in state T. (SIGSTOP lands after a write in
    // progress, so once it is stopped no line can come until the thaw.)
    const shells = await settled(() => tickerShells("in-machine"), (s) => s.length > 0 && s.every((p) => p.state === "T"));
    assert.ok(shells.length > 0 && shells.every((p) => p.state === "T"), `the ticker's shell is stopped: ${JSON.stringify(shells)}`);
    const frozenAt = ticks();
    // Nothing runs while frozen, over a window that is no synchronisation: the same ticker
    // on the host, not frozen, ticks 20 times (1 s at 50 ms each) meanwhile.
    const referenceFile = join(env.root, "reference-ticks");
    const reference = execa("bash", ["-c", tickerLoop("reference", referenceFile)], { reject: false });
    try {
      const referenceTicks = () => (existsSync(referenceFile) ? readFileSync(referenceFile, "utf8").split("\n").length - 1 : 0);
      assert.ok((await settled(referenceTicks, (n) => n >= 20)) >= 20, "the reference ticker ticked 20 times");
    } finally {
      reference.kill();
      await reference;
    }
    assert.equal(ticks(), frozenAt, "nothing ran while frozen");
    await assert.rejects(m.execute("true"), /frozen/);
    await m.thaw();
    assert.ok((await settled(ticks, (n) => n > frozenAt)) > frozenAt, "it runs again after thaw");
    await m.succeed("pkill -f 'echo t' || true");
  });

  test("methods a process sandbox cannot have are not in its type, and fail clearly when JavaScript calls them anyway", async () => {
    const js = m as unknown as VmMachine; // what an untyped script sees
    // The script's joinAll (NixOS join_all) waits for each machine's own power-off: not a sandbox's.
    const script = buildTestContext([m], 1, () => {}, {} as DebugApi);
    for (const call of [() => js.waitForUnit("sshd"), () => js.screenshot("x"), () => js.sendMonitorCommand("info"), () => js.block(), () => js.unblock(), () => js.forwardPort(1, 2), () => js.reboot(), () => js.getScreenTextVariants(), () => script.joinAll()]) {
      await assert.rejects(call(), (e: Error) => e instanceof NotSupportedError && /not supported by the local backend/.test(e.message));
    }
  });
});

test("crash kills the machine and everything it started; shutdown ends it cleanly", async () => {
  const env = testMachineContext();
  const m = new LocalMachine("victim", {}, env.ctx);
  try {
    await m.start();
    const marker = `hp-marker-${process.pid}-${Date.now()}`;
    await m.succeed(`(exec -a ${marker} sleep 600) >/dev/null 2>&1 &`);
    assert.equal((await settled(() => processesMatching(marker), (p) => p.length === 1)).length, 1);
    const pid = m.pid!;
    await m.crash();
    assert.equal(m.state, "crashed");
    assert.deepEqual(await emptied(() => processesMatching(marker)), [], "the background process died with the machine");
    assert.equal(isAlive(pid), false);
    await assert.rejects(m.succeed("true"), /machine victim: cannot run `true`: the machine is crashed/);

    const m2 = new LocalMachine("clean", {}, env.ctx);
    await m2.start();
    await m2.shutdown();
    assert.equal(m2.state, "stopped");
    assert.equal(isAlive(m2.pid!), false);
  } finally {
    await m.cleanup();
    env.cleanup();
  }
});

test("a shell killed from outside fails the pending command at once", async () => {
  const env = testMachineContext();
  const m = new LocalMachine("shot", {}, env.ctx);
  try {
    await m.start();
    const pending = m.execute("sleep 30");
    // Pending in the shell: its command runs.
    assert.ok((await settled(() => processesMatching("sleep 30"), (p) => p.length > 0)).length > 0, "the command runs");
    process.kill(-m.pid!, "SIGKILL");
    await assert.rejects(pending, /machine shot: command `sleep 30` lost its shell: shell exited \(signal 9\)/);
    // The same error as a qemu guest that goes away (vm/shell-machine.ts): checkReturn: false tolerates it.
    await assert.rejects(pending, (e) => e instanceof ConnectionLostError);
    assert.equal(m.state, "crashed");
    assert.ok(existsSync(env.ctx.consolePath("shot")!));
  } finally {
    await m.cleanup();
    env.cleanup();
  }
});
