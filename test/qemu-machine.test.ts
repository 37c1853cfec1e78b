// The Machine API on real QEMU guests (haltpoint's own image, TCG here).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { readFileSync, writeFileSync, mkdirSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { QemuMachine } from "../vm/qemu/qemu-machine.ts";
import { waitForRecord } from "../vm/image/guest-restore-prep.ts";
import { VMFORK_RESEED_LINE } from "../vm/image/guest-personalize.ts";
import { sleep, testMachineContext } from "./helpers/machine-context.ts";
import { qemuProcesses, qemuRuntime } from "./helpers/qemu.ts";
import { emptied } from "./helpers/settled.ts";

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

describe("a qemu guest", () => {
  const env = testMachineContext();
  let m: QemuMachine;

  const disk = join(env.root, "data.img");

  before(async () => {
    const rt = await qemuRuntime();
    // A data disk beside haltpoint's own kernel + initrd (snapshot: the file stays untouched).
    writeFileSync(disk, Buffer.concat([Buffer.from("haltpoint disk\n"), Buffer.alloc(1024 * 1024 - 15)]));
    m = new QemuMachine("guest", { memory: 256, kernel: rt.kernel, initrd: rt.initrd, diskImage: disk }, env.ctx, rt, undefined);
    await m.start();
  });
  after(async () => {
    await m?.cleanup();
    env.cleanup();
  });

  test("runs commands in its root shell with exact status and output", async () => {
    assert.equal((await m.succeed("hostname")).trim(), "guest");
    assert.equal((await m.succeed("id -u")).trim(), "0");
    assert.deepEqual(await m.execute("echo partial; exit 7"), { status: 7, stdout: "partial\n" });
    const quoted = `it's "quoted" \\ $HOME \`x\` ✓`;
    assert.equal(await m.succeed(`printf '%s' '${quoted.replace(/'/g, "'\\''")}'`), quoted);
    await assert.rejects(m.succeed("false"), /machine guest: command `false` failed \(exit code 1\)/);
  });

  test("a disk image is attached as a virtio disk, in snapshot mode", async () => {
    assert.equal(await m.succeed("head -c 15 /dev/vda"), "haltpoint disk\n");
    await m.succeed("printf 'CHANGED' | dd of=/dev/vda conv=notrunc 2>/dev/null && sync");
    assert.equal(await m.succeed("head -c 7 /dev/vda"), "CHANGED");
    assert.equal(readFileSync(disk).subarray(0, 15).toString(), "haltpoint disk\n", "the image file itself is untouched");
  });

  test("a large output survives a host that reads nothing for seconds (QEMU drops a virtconsole's output; the shell's port is throttled)", async () => {
    await m.succeed("head -c 3000000 /dev/urandom > /tmp/big; sha256sum /tmp/big | cut -d' ' -f1 > /tmp/bigsum");
    const want = (await m.succeed("cat /tmp/bigsum")).trim();
    const out = m.execute("cat /tmp/big", { encoding: "buffer" });
    // Not synchronisation: once the guest is writing, this thread stops reading for 3 s, so
    // the socket between QEMU and the host fills up, as it does on a loaded host.
    await new Promise((r) => setTimeout(r, 200));
    const end = Date.now() + 3000;
    while (Date.now() < end);
    const r = await out;
    assert.equal(r.stdout.length, 3_000_000);
    assert.equal(createHash("sha256").update(r.stdout).digest("hex"), want);
  });

  test("binary output comes back byte for byte", async () => {
    const r = await m.execute("head -c 300000 /dev/urandom > /tmp/blob; sha256sum /tmp/blob | cut -d' ' -f1 > /tmp/sum; cat /tmp/blob", { encoding: "buffer" });
    assert.equal(r.stdout.length, 300000);
    const want = (await m.succeed("cat /tmp/sum")).trim();
    assert.equal(createHash("sha256").update(r.stdout).digest("hex"), want);
    assert.deepEqual([...(await m.execute("printf 'a\\0b\\377'", { encoding: "buffer" })).stdout], [0x61, 0, 0x62, 0xff]);
  });

  test("stderr goes to the serial console, where waitForConsoleText sees it", async () => {
    await m.succeed("echo 'console says hi' >&2");
    assert.equal(await m.waitForConsoleText(/console says (\w+)/, { timeout: 10 }), "console says hi");
    assert.match(m.consoleLog(), /Spawning backdoor root shell/);
  });

  test("a frozen guest's clock does not advance, and nothing runs until thaw", async () => {
    const uptime = async () => Number((await m.succeed("cut -d' ' -f1 /proc/uptime")).trim());
    const before = await uptime();
    const t0 = Date.now();
    await m.freeze();
    assert.equal(m.state, "frozen");
    assert.match(await m.sendMonitorCommand("info status"), /paused/);
    // The interval being measured, not a wait for something to happen: host time passes
    // while the guest is frozen; the assertions compare the two clocks over it.
    await sleep(3000);
    await m.thaw();
    const guestElapsed = (await uptime()) - before;
    const hostElapsed = (Date.now() - t0) / 1000;
    assert.ok(hostElapsed >= 3, `host time passed: ${hostElapsed}`);
    assert.ok(guestElapsed < hostElapsed - 2, `guest clock advanced ${guestElapsed} s while the host's advanced ${hostElapsed} s`);
  });

  test("screenshot writes a valid PNG", async () => {
    const file = await m.screenshot("screen");
    const png = readFileSync(file);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.equal(png.subarray(12, 16).toString("latin1"), "IHDR");
    assert.ok(png.readUInt32BE(16) > 0 && png.readUInt32BE(20) > 0, "it has a width and a height");
  });

  test("forwardPort makes a guest port reachable from the host's loopback", async () => {
    await m.succeed("mkdir -p /srv && echo served > /srv/x && httpd -p 8080 -h /srv");
    await m.waitForOpenPort(8080, { timeout: 30 });
    const port = await freePort();
    await m.forwardPort(port, 8080);
    const body = await fetch(`http://127.0.0.1:${port}/x`).then((r) => r.text());
    assert.equal(body, "served\n");
  });

  test("copyToMachine / copyFromMachine go through the backdoor", async () => {
    const src = join(env.root, "payload");
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, "f"), "payload\n");
    await m.copyToMachine(src, "/root/payload");
    assert.equal(await m.succeed("cat /root/payload/f"), "payload\n");
    const out = await m.copyFromMachine("/root/payload", join(env.root, "back"));
    assert.equal(readFileSync(join(out, "f"), "utf8"), "payload\n");
  });

  test("a command over its timeout fails naming the command and is killed in the guest; waitForUnit says there is no systemd", async () => {
    await m.succeed("(sleep 1000 </dev/null >/dev/null 2>&1 &) ; echo daemon started");
    await assert.rejects(
      m.execute("sh -c 'sleep 900; echo never' | cat", { timeout: 1 }),
      /machine guest: command `sh -c 'sleep 900; echo never' \| cat` timed out after 1 s/,
    );
    // The kill port (vm/qemu/kill-port.ts) ended the command's whole tree: the shell serves
    // again long before the 900 s were up, and no `sleep 900` is left.
    assert.deepEqual(await m.execute("echo again", { timeout: 30 }), { status: 0, stdout: "again\n" });
    assert.equal(await m.succeed("ps -o args | grep -c '^sleep 900' || true"), "0\n");
    // A daemon an earlier command left behind belongs to PID 1, not the shell: it stays.
    assert.equal(await m.succeed("ps -o args | grep -c '^sleep 1000' || true"), "1\n");
    // And the next timeout works the same way.
    await assert.rejects(m.execute("sleep 900", { timeout: 1 }), /timed out after 1 s/);
    assert.deepEqual(await m.execute("echo and again", { timeout: 30 }), { status: 0, stdout: "and again\n" });
    await assert.rejects(m.waitForUnit("sshd"), /does not run systemd/);
  });

  test("a restore's wait for the CRNG's kernel record reads on when the clock jumps forward under it", async () => {
    // The restored guest's clock is set (by a helper, vm/image/guest-restore-prep.ts) while its
    // shell waits for the reseed's record, and bash times `read -t` by the wall clock: a read
    // under way when the clock jumps ends at once. Here the jump (a day) comes while the wait
    // reads a fifo, the record after it; the wait must still see the record.
    const record = `6,1,1,-;random: ${VMFORK_RESEED_LINE}`;
    const out = await m.succeed(
      [
        "f=/tmp/hp-records; rm -f $f; mkfifo $f; exec {fd}<>$f",
        `( sleep 0.3; date -s @$(( $(date +%s) + 86400 )) > /dev/null; sleep 0.3; echo '${record}' > $f ) &`,
        `r= s= i= o=0; ${waitForRecord("$fd", VMFORK_RESEED_LINE)}`,
        `wait; exec {fd}<&-; rm -f $f; date -s @${Math.round(Date.now() / 1000)} > /dev/null; echo "record seen: \${s:-no}, timeouts: $o"`,
      ].join("\n"),
    );
    assert.equal(out.trim(), "record seen: 1, timeouts: 1", "the jump ended one read; the wait read on and found the record");
  });

  test("shutdown powers the guest off cleanly", async () => {
    await m.shutdown();
    assert.equal(m.state, "stopped");
    assert.equal(m.exitDescription, "exit code 0", "QEMU ended because the guest powered off, not killed");
    await assert.rejects(m.succeed("true"), /the machine is stopped/);
  });
});

test("a guest that never opens its backdoor fails after its boot timeout, with its console tail", async () => {
  const env = testMachineContext();
  // rdinit=/bin/sh: a shell on the console that never starts the backdoor. The timeout leaves
  // a TCG guest on a busy host time to reach that shell (8 s did not, at load 16 in CI).
  const m = new QemuMachine("mute", { memory: 256, bootTimeout: 20, append: "rdinit=/bin/sh" }, env.ctx, await qemuRuntime(), undefined);
  try {
    await assert.rejects(m.start(), (e: Error) => {
      assert.match(e.message, /^machine mute: boot failed: .*within 20 s/);
      assert.match(e.message, /last 50 console lines:/);
      assert.match(e.message, /BusyBox .* built-in shell/, "the console tail is in the error");
      return true;
    });
    assert.equal(m.state, "crashed");
  } finally {
    await m.cleanup();
    env.cleanup();
  }
});

test("QEMU killed from outside mid-command fails that command at once", async () => {
  const env = testMachineContext();
  const m = new QemuMachine("victim", { memory: 256 }, env.ctx, await qemuRuntime(), undefined);
  try {
    await m.start();
    const pending = m.execute("sleep 60");
    // Not a synchronisation: the command is pending from the call on, killed early or late the
    // assertion is the same (its rejection, at once); the pause only lets the guest start it.
    await sleep(300);
    process.kill(m.pid!, "SIGKILL");
    const t0 = Date.now();
    await assert.rejects(pending, /machine victim: command `sleep 60` lost its shell: qemu exited \(signal 9\)/);
    assert.ok(Date.now() - t0 < 5000, "no hang");
    assert.equal(m.state, "crashed");
  } finally {
    await m.cleanup();
    env.cleanup();
  }
});

test("a NixOS-style start script gets haltpoint's sockets through QEMU_OPTS", async () => {
  const env = testMachineContext();
  const rt = await qemuRuntime();
  // A stand-in for a NixOS run-<name>-vm script: its own kernel, initrd and memory, then $QEMU_OPTS.
  const script = join(env.root, "run-box-vm");
  writeFileSync(
    script,
    `#!/bin/sh\nexec qemu-system-x86_64 -nodefaults -machine pc -accel tcg -m 256 -display none -no-reboot ` +
      `-kernel ${rt.kernel} -initrd ${rt.initrd} -append "console=ttyS0 panic=-1 quiet hp.hostname=box" ` +
      `-netdev user,id=net0 -device virtio-net-pci,netdev=net0 $QEMU_OPTS "$@"\n`,
  );
  chmodSync(script, 0o755);
  const m = new QemuMachine("box", { startScript: script }, env.ctx, rt, undefined);
  try {
    await m.start();
    assert.equal((await m.succeed("hostname")).trim(), "box");
  } finally {
    await m.cleanup();
    env.cleanup();
  }
});

test("no QEMU outlives the tests above", async () => {
  assert.deepEqual(await emptied(() => qemuProcesses()), []);
});
