// The NixOS driver's test-level calls through the real CLI, on local machines: the single
// node alias `machine`, serialStdout, createMachine, polling conditions.
import { test } from "node:test";
import assert from "node:assert/strict";
import { haltpoint } from "./helpers/cli.ts";
import { PollingConditions } from "../worker/polling-condition.ts";

test("a single node is also `machine`; serialStdout echoes consoles; createMachine adds a machine", async () => {
  const r = await haltpoint(["run", "test/fixtures/driver/single-node.vmtest.ts"]);
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /single-node#1 web: echoed console line/);
  assert.doesNotMatch(r.all, /single-node#1 web: quiet console line/, "off again after serialStdout(false)");
  assert.match(r.all, /single-node#1: created: extra/);
});

test("a polling condition that turns false fails the test with its description", async () => {
  const r = await haltpoint(["run", "test/fixtures/driver/polling.vmtest.ts"]);
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.all, /polling#1: checks so far: ([2-9]|\d\d)/);
  assert.match(r.all, /polling#1 client: must succeed: echo still fine/);
  assert.match(r.all, /!!! polling#1: FAIL .*polling condition failed: the server's flag file exists \(again\)/);
  assert.doesNotMatch(r.all, /not reached/);
});

test("a condition is checked at most once per secondsInterval, and its own commands do not recurse", async () => {
  const conditions = new PollingConditions();
  let calls = 0;
  let nested = 0;
  conditions.add("counts", async () => {
    calls++;
    // A machine command inside the condition runs checkAll again: it must not re-enter.
    await conditions.checkAll();
    nested++;
    return true;
  }, { secondsInterval: 3600 });
  await conditions.checkAll();
  await conditions.checkAll();
  assert.equal(calls, 1, "not due again within the interval");
  assert.equal(nested, 1);
  const failing = conditions.add("throws", () => {
    throw new Error("boom");
  }, { secondsInterval: 0 });
  await assert.rejects(conditions.checkAll(), /^PollingConditionError: polling condition failed: throws \(boom\)$/);
  failing.stop();
  await conditions.checkAll();
  assert.throws(() => conditions.add("", () => true), /the first argument is its description/);
});

test("haltpoint repl through a pipe: starts nothing by itself, runs typed commands in order, .exit tears down", async () => {
  const r = await haltpoint(["repl", "test/fixtures/driver/repl-target.vmtest.ts"], {
    input: 'box.state\nawait startAll()\nawait machine.succeed("echo typed-$((6*7))")\nbox.state\n.exit\nawait testScript()\n',
  });
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /machines box \(local\), none started/);
  assert.match(r.all, /'created'[\s\S]*box: starting[\s\S]*'typed-42\\n'[\s\S]*'running'/, "each line ran after the one before");
  assert.doesNotMatch(r.all, /testScript ran/, "the script does not run unless asked, and nothing runs after .exit");
  assert.match(r.all, /haltpoint repl: tearing down 1 machine/);
});

test("haltpoint repl on a qemu guest: a typed command runs in the guest; end of input leaves no QEMU and no state dir", async () => {
  const { qemuProcesses } = await import("./helpers/qemu.ts");
  const { readdirSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const stateDirs = () => readdirSync(tmpdir()).filter((d) => d.startsWith("hp-repl-"));
  const before = new Set(stateDirs());
  const child = haltpoint(["repl", "test/fixtures/driver/repl-qemu.vmtest.ts"], { timeout: 600_000 });
  const { watchOutput } = await import("./helpers/cli.ts");
  const out = watchOutput(child, 300_000);
  await out.waitFor(/machines vm \(qemu\), none started/);
  child.stdin!.write("await vm.start()\n");
  child.stdin!.write('await vm.succeed("uname -s; hostname")\n');
  await out.waitFor(/'Linux\\nvm\\n'/);
  assert.equal((await qemuProcesses()).length, 1, "one guest while the REPL runs");
  child.stdin!.end();
  const r = await child;
  assert.equal(r.exitCode, 0, r.all);
  assert.doesNotMatch(r.all, /testScript ran/);
  assert.deepEqual(await qemuProcesses(), []);
  assert.deepEqual(stateDirs().filter((d) => !before.has(d)), [], "its state dir is removed");
});
