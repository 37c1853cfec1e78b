// --keep-machine-state (NixOS -K): a machine's state outlives the run, for local machines
// (their directory) through the real CLI, and for a qemu disk image (a kept overlay).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { haltpoint, ROOT } from "./helpers/cli.ts";
import { QemuMachine } from "../vm/qemu/qemu-machine.ts";
import { testMachineContext } from "./helpers/machine-context.ts";
import { qemuProcesses, qemuRuntime } from "./helpers/qemu.ts";

test("a local machine's directory is kept across runs with --keep-machine-state, and only with it", async () => {
  const kept = join(ROOT, ".haltpoint", "state", "keep-state");
  rmSync(kept, { recursive: true, force: true });
  try {
    const file = "test/fixtures/driver/keep-state.vmtest.ts";
    assert.match((await haltpoint(["run", file, "--keep-machine-state"])).all, /keep-state#1: run number 1 of this machine/);
    assert.match((await haltpoint(["run", file, "-K"])).all, /keep-state#1: run number 2 of this machine/);
    assert.equal(readFileSync(join(kept, "box", "runs"), "utf8"), "2\n");
    assert.equal(statSync(join(ROOT, ".haltpoint", "state")).mode & 0o777, 0o700, "kept state is private (disks hold what guests wrote)");
    assert.match((await haltpoint(["run", file])).all, /keep-state#1: run number 1 of this machine/, "without the flag: a fresh directory");
    assert.match((await haltpoint(["run", file, "-K"])).all, /keep-state#1: run number 3 of this machine/);
  } finally {
    rmSync(kept, { recursive: true, force: true });
  }
});

test("a qemu machine's disk image gets a kept overlay: what the guest wrote is there next time; the image is untouched", async () => {
  const env = testMachineContext();
  const disk = join(env.root, "data.img");
  writeFileSync(disk, Buffer.alloc(1024 * 1024));
  const keptDir = join(env.root, "kept", "guest");
  const ctx = { ...env.ctx, keptStateDir: () => keptDir };
  const rt = await qemuRuntime();
  try {
    const first = new QemuMachine("guest", { memory: 256, kernel: rt.kernel, initrd: rt.initrd, diskImage: disk }, ctx, rt, undefined);
    await first.start();
    await first.succeed("printf KEPT-42 | dd of=/dev/vda conv=notrunc 2>/dev/null && sync");
    await first.cleanup();
    assert.ok(existsSync(join(keptDir, "disk.qcow2")));
    const second = new QemuMachine("guest", { memory: 256, kernel: rt.kernel, initrd: rt.initrd, diskImage: disk }, ctx, rt, undefined);
    await second.start();
    assert.equal(await second.succeed("head -c 7 /dev/vda"), "KEPT-42");
    await second.cleanup();
    assert.ok(readFileSync(disk).subarray(0, 7).every((b) => b === 0), "the image itself is untouched");
    assert.deepEqual(await qemuProcesses(), []);
  } finally {
    env.cleanup();
  }
});
