// The NixOS-driver methods on one real QEMU guest (haltpoint's image, TCG here): screen and
// keyboard (OCR with tesseract, QMP send-key, /dev/vcs), the serial console, waits and
// commands, QMP events and power (reboot with and without allowReboot, waitForShutdown).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { QemuMachine } from "../vm/qemu/qemu-machine.ts";
import { buildTestContext } from "../worker/test-context.ts";
import type { DebugApi } from "../index.ts";
import { testMachineContext } from "./helpers/machine-context.ts";
import { qemuProcesses, qemuRuntime } from "./helpers/qemu.ts";
import { emptied } from "./helpers/settled.ts";

/** The script's debug helpers, which joinAll does not use: calling one fails the test. */
const NO_DEBUG = new Proxy({}, { get: (_t, k) => () => assert.fail(`debug.${String(k)} called`) }) as DebugApi;

describe("a qemu guest driven like a NixOS test", () => {
  const env = testMachineContext();
  let m: QemuMachine;
  const uptime = async () => Number((await m.succeed("cut -d' ' -f1 /proc/uptime")).trim());
  const bootId = async () => (await m.succeed("cat /proc/sys/kernel/random/boot_id")).trim();

  before(async () => {
    m = new QemuMachine("guest", { memory: 256 }, env.ctx, await qemuRuntime(), undefined);
    await m.start({ allowReboot: true });
  });
  after(async () => {
    await m?.cleanup();
    env.cleanup();
  });

  test("OCR reads text a command printed to the screen; getTtyText reads the same from /dev/vcs1", async () => {
    await m.succeed("clear > /dev/tty1; echo 'OCR-CHECK-4242 printed' > /dev/tty1");
    assert.equal(await m.waitForText(/OCR-CHECK-\d+/, { timeout: 120 }), "OCR-CHECK-4242");
    assert.match(await m.getScreenText(), /OCR-CHECK-4242 printed/);
    const tty = await m.getTtyText(1);
    assert.match(tty, /^OCR-CHECK-4242 printed {2,}$/m, "one row per screen line, as wide as the tty");
    assert.equal(tty.split("\n")[0]!.length, 80);
    await m.waitUntilTtyMatches(1, /OCR-CHECK-4242/, { timeout: 30 });
    await assert.rejects(m.waitUntilTtyMatches(1, /never-on-screen/, { timeout: 2 }), /machine guest: timed out after 2 s waiting for \/never-on-screen\/ on tty 1/);
    // NixOS get_screen_text_variants: three readings of one screendump (as one block, as lines,
    // gray inverted and doubled); each reads the line, and no image is left in the state dir.
    const variants = await m.getScreenTextVariants();
    assert.equal(variants.length, 3);
    for (const [i, v] of variants.entries()) assert.match(v, /OCR-CHECK-4242/, `variant ${i}: ${JSON.stringify(v)}`);
    assert.deepEqual(readdirSync(env.ctx.stateDir("guest")).filter((f) => f.startsWith("ocr-")), [], "the screendump and its gray copy are removed");
    // NixOS dump_tty_contents: the tty's rows into the log (NixOS: the guest's journal).
    const logged = env.logs.length;
    await m.dumpTtyContents(1);
    assert.match(env.logs.slice(logged).join("\n"), /guest: tty 1 shows 1 line:\nguest: {3}\| OCR-CHECK-4242 printed$/);
  });

  test("sendChars types into a program reading the keyboard, and changes what it prints", async () => {
    // Keys typed while no process has the tty open are dropped: the reader opens it, then says so.
    await m.succeed(`setsid sh -c 'exec 3</dev/tty1; touch /tmp/tty1-open; read -r l <&3; echo "you typed: [$l]" >/dev/tty1' </dev/null >/dev/null 2>&1 &`);
    await m.waitForFile("/tmp/tty1-open", { timeout: 30 });
    await m.sendChars("Hello, World_1!");
    await m.sendKey("ret");
    await m.waitUntilTtyMatches(1, /you typed: \[Hello, World_1!\]/, { timeout: 60 });
    // OCR is exact on letters; punctuation it may misread ("!" as "?"): /dev/vcs1 above is exact.
    assert.match(await m.waitForText(/you typed: .*/, { timeout: 120 }), /you typed: \[Hello, World_1/);
    await assert.rejects(m.sendKey("ctrl-notakey!"), /'notakey!' is not a key name/);
    await assert.rejects(m.sendChars("ü"), /cannot type "ü"/);
  });

  test("sendConsole writes to the guest's serial console", async () => {
    // As for the keyboard: what reaches a port nobody has open is dropped; head's shell opens it first.
    await m.succeed("(sh -c 'exec 3</dev/ttyS0; touch /tmp/serial-open; head -n1 <&3 >/tmp/serial-in 2>&1' &) ");
    await m.waitForFile("/tmp/serial-open", { timeout: 30 });
    await m.sendConsole("typed-on-serial\n");
    assert.equal(await m.waitUntilSucceeds("grep -x typed-on-serial /tmp/serial-in", { timeout: 30 }), "typed-on-serial\n");
  });

  test("waitForConsoleText consumes what it matched, as NixOS does", async () => {
    await m.succeed("echo 'tick-1 here' >&2");
    assert.equal(await m.waitForConsoleText(/tick-\d/, { timeout: 30 }), "tick-1");
    await assert.rejects(m.waitForConsoleText(/tick-1/, { timeout: 2 }), /timed out after 2 s waiting for \/tick-1\/ on the console/);
    await m.succeed("echo 'tick-1 again' >&2");
    assert.equal(await m.waitForConsoleText(/tick-1 \w+/, { timeout: 30 }), "tick-1 again");
  });

  test("execute with checkOutput/checkReturn, succeed/fail with a timeout, sleep in guest time", async () => {
    assert.deepEqual(await m.execute("sleep 1; touch /tmp/sent", { checkOutput: false }), { status: -2, stdout: "" });
    await m.waitForFile("/tmp/sent", { timeout: 30 });
    assert.deepEqual(await m.execute("echo out; exit 3", { checkReturn: false }), { status: -1, stdout: "out\n" });
    await assert.rejects(m.succeed("sleep 30", { timeout: 1 }), /machine guest: command `sleep 30` timed out after 1 s/);
    assert.equal(await m.succeed("echo a", "echo b", { timeout: 30 }), "a\nb\n");
    assert.equal(await m.fail("echo no; false", { timeout: 30 }), "no\n");
    await assert.rejects(m.succeed("true", { timeout: -1 }), /succeed\(\): timeout must be a positive number/);
    const t0 = await uptime();
    await m.sleep(2);
    assert.ok((await uptime()) - t0 >= 2, "the guest's clock advanced by the sleep");
  });

  test("waitForQmpEvent returns the first matching event, also one that came before the call", async () => {
    await m.freeze();
    await m.thaw();
    const e = await m.waitForQmpEvent((ev) => ev.event === "RESUME", { timeout: 30 });
    assert.equal(e.event, "RESUME");
    // The STOP before it was skipped (NixOS semantics): nothing matching is left.
    await assert.rejects(m.waitForQmpEvent((ev) => ev.event === "STOP", { timeout: 1 }), /machine guest: waitForQmpEvent: no matching QMP event within 1 s/);
  });

  test("reboot with allowReboot: the same QEMU, the guest comes back with a fresh uptime", async () => {
    const pid = m.pid;
    await m.succeed("touch /tmp/before-reboot");
    const id = await bootId();
    const before = await uptime();
    const t0 = Date.now();
    await m.reboot();
    assert.equal(m.state, "running");
    assert.equal(m.pid, pid, "QEMU kept running");
    assert.notEqual(await bootId(), id, "another boot");
    const after = await uptime();
    assert.ok(after < before && after < (Date.now() - t0) / 1000, `a fresh uptime (${before} s before, ${after} s after)`);
    await m.fail("test -e /tmp/before-reboot");
    assert.equal((await m.succeed("hostname")).trim(), "guest");
    assert.ok(await m.waitForQmpEvent((ev) => ev.event === "RESET" && ev.data?.guest === true, { timeout: 5 }));
  });

  test("waitForShutdown (and the script's joinAll, NixOS join_all) waits for the guest to power itself off; start() boots it again", async () => {
    assert.deepEqual(await m.execute("poweroff", { checkOutput: false }), { status: -2, stdout: "" });
    const script = buildTestContext([m], 1, () => {}, NO_DEBUG);
    await script.joinAll({ timeout: 120 });
    assert.equal(m.state, "stopped");
    assert.equal(m.exitDescription, "exit code 0");
    await m.start(); // allowReboot off now: -no-reboot
    assert.equal((await m.succeed("echo back")).trim(), "back");
  });

  test("reboot without allowReboot: QEMU ends and starts again, the guest has a fresh uptime", async () => {
    const pid = m.pid;
    const id = await bootId();
    const t0 = Date.now();
    await m.reboot();
    assert.equal(m.state, "running");
    assert.notEqual(m.pid, pid, "a new QEMU");
    assert.notEqual(await bootId(), id, "another boot");
    assert.ok((await uptime()) < (Date.now() - t0) / 1000, "the guest's clock started during the reboot");
  });

  test("without tesseract, OCR fails with one line saying how to install it", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      for (const read of [() => m.getScreenText(), () => m.getScreenTextVariants()]) {
        await assert.rejects(read(), /^Error: getScreenText\(\)\/getScreenTextVariants\(\)\/waitForText\(\) need tesseract for OCR: install it with `apt-get install tesseract-ocr`/);
      }
    } finally {
      process.env.PATH = path;
    }
  });
});

test("no QEMU outlives the tests above", async () => {
  assert.deepEqual(await emptied(() => qemuProcesses()), []);
});
