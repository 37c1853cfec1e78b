// The qemu backend through the real CLI: examples, admission by memory, interrupts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { haltpoint } from "./helpers/cli.ts";
import { qemuProcesses } from "./helpers/qemu.ts";
import { emptied, settled } from "./helpers/settled.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const tmp = () => tempDir("hp-qcli-");

test("every example passes on real VMs, including two guests talking by name", async () => {
  const dir = tmp();
  // examples/nixos (Debian guests, three in one test) is test/debian-config.test.ts's to run.
  const r = await haltpoint(["run", "examples", "--backend", "qemu", "--filter", "^(?!.*nixos)", "--json", join(dir, "r.json")], { timeout: 600_000 });
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /accel: tcg|accel: kvm/, "the accelerator choice is logged");
  assert.match(r.all, /qemu-network#1 client: must succeed: wget -q -O - http:\/\/server\/index.html/);
  const report = JSON.parse(readFileSync(join(dir, "r.json"), "utf8"));
  assert.ok(report.summary.passed >= 6);
  assert.equal(report.summary.failed, 0);
});

test("a test that can never fit the memory budget fails at once; others wait rather than overcommit", async () => {
  const dir = tmp();
  const huge = await haltpoint(["run", "test/fixtures/qemu-huge", "--memory", "1024"]);
  assert.equal(huge.exitCode, 1, huge.all);
  assert.match(huge.all, /!!! huge#1: FAIL \(0 ms\): its qemu machines need 4096 MiB of memory \(budget 1024 MiB, --memory\)/);

  // Two 256 MiB guests, a 300 MiB budget, two jobs: the second must wait for the first.
  const r = await haltpoint(["run", "test/fixtures/qemu-budget", "--jobs", "2", "--memory", "300", "--json", join(dir, "b.json")], { timeout: 300_000 });
  assert.equal(r.exitCode, 0, r.all);
  const runs = JSON.parse(readFileSync(join(dir, "b.json"), "utf8")).tests.map((t: { runs: { startedAt: string; durationMs: number }[] }) => t.runs[0]);
  const [first, second] = runs.sort((x: { startedAt: string }, y: { startedAt: string }) => Date.parse(x.startedAt) - Date.parse(y.startedAt));
  assert.ok(Date.parse(second.startedAt) >= Date.parse(first.startedAt) + first.durationMs - 50, `the runs overlapped: ${JSON.stringify(runs)}`);
});

test("Ctrl-C during a qemu test leaves no QEMU behind", async () => {
  const child = haltpoint(["run", "test/fixtures/qemu-hang"], { timeout: 300_000 });
  let seen = "";
  child.all!.on("data", (c) => (seen += c));
  await settled(() => seen, (s) => /must succeed: echo guest is up/.test(s), 60_000);
  assert.match(seen, /must succeed: echo guest is up/);
  assert.equal((await qemuProcesses()).length, 1);
  child.kill("SIGINT");
  const r = await child;
  assert.equal(r.exitCode, 130, r.all);
  assert.deepEqual(await emptied(() => qemuProcesses()), []);
});

test("an orchestrator killed with SIGKILL leaves no QEMU behind (parent-death signal)", async () => {
  const child = haltpoint(["run", "test/fixtures/qemu-hang"], { timeout: 300_000 });
  let seen = "";
  child.all!.on("data", (c) => (seen += c));
  await settled(() => seen, (s) => /must succeed: echo guest is up/.test(s), 60_000);
  assert.equal((await qemuProcesses()).length, 1);
  child.kill("SIGKILL");
  await child;
  assert.deepEqual(await emptied(() => qemuProcesses()), []);
});
