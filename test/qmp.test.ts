// QmpClient against a real QEMU. No guest is needed for QMP: a machine with no boot
// device sits in SeaBIOS, which is enough for status, events, screendumps and HMP.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa, type ResultPromise } from "execa";
import { QEMU_BINARY } from "../vm/qemu/qemu-argv.ts";
import { QmpClient, QmpClosedError, QmpError } from "../vm/qemu/qmp.ts";

interface BareQemu {
  proc: ResultPromise;
  qmpPath: string;
  dir: string;
  /** Kill QEMU (if still running) and remove its directory. */
  stop: () => Promise<void>;
}

/** A QEMU with only a VGA card and a QMP socket. */
async function startBareQemu(): Promise<BareQemu> {
  const dir = await mkdtemp(join(tmpdir(), "hp-qmp-"));
  const qmpPath = join(dir, "qmp.sock");
  const proc = execa(
    QEMU_BINARY,
    ["-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "tcg", "-m", "64", "-display", "none", "-vga", "std",
      "-chardev", `socket,id=qmp,path=${qmpPath},server=on,wait=off`, "-mon", "chardev=qmp,mode=control"],
    { reject: false, stdin: "ignore" },
  );
  const stop = async () => {
    proc.kill("SIGKILL");
    await proc;
    await rm(dir, { recursive: true, force: true });
  };
  return { proc, qmpPath, dir, stop };
}

describe("QmpClient", () => {
  let qemu: BareQemu;
  let qmp: QmpClient;

  before(async () => {
    qemu = await startBareQemu();
    // Connect right away: the client retries until QEMU has created the socket.
    qmp = await QmpClient.connect(qemu.qmpPath, { timeoutMs: 10_000 });
  });
  after(async () => {
    qmp?.close();
    await qemu?.stop();
  });

  it("negotiates capabilities and queries the status", async () => {
    const status = await qmp.queryStatus();
    assert.equal(status.status, "running");
    assert.equal(status.running, true);
  });

  it("stops and continues the VM, with STOP and RESUME events", async () => {
    const stopped = qmp.waitForEvent("STOP", 5000);
    await qmp.stop();
    const ev = await stopped;
    assert.equal(ev.event, "STOP");
    assert.equal(typeof ev.timestamp.seconds, "number");
    assert.equal((await qmp.queryStatus()).status, "paused");

    const resumed = qmp.waitForEvent("RESUME", 5000);
    await qmp.cont();
    await resumed;
    assert.equal((await qmp.queryStatus()).running, true);
  });

  it("takes a screendump as PNG (QEMU 7.2), or PPM on request", async () => {
    const png = join(qemu.dir, "screen.png");
    assert.equal(await qmp.screendump(png), "png");
    assert.deepEqual([...(await readFile(png)).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const ppm = join(qemu.dir, "screen.ppm");
    assert.equal(await qmp.screendump(ppm, "ppm"), "ppm");
    assert.equal((await readFile(ppm)).subarray(0, 2).toString(), "P6");
  });

  it("runs human monitor commands", async () => {
    assert.match(await qmp.humanMonitorCommand("info status"), /VM status: running/);
  });

  it("rejects an unknown command with QEMU's error class and description", async () => {
    await assert.rejects(qmp.execute("no-such-command"), (e: unknown) => {
      assert.ok(e instanceof QmpError);
      assert.equal(e.qmpClass, "CommandNotFound");
      assert.match(e.desc, /no-such-command/);
      return true;
    });
    await assert.rejects(qmp.setLink("no-such-nic", false), QmpError);
  });

  it("times out clearly when no QEMU listens", async () => {
    await assert.rejects(
      QmpClient.connect(join(qemu.dir, "nobody.sock"), { timeoutMs: 300 }),
      /QMP socket .*nobody\.sock did not accept a connection within 0\.3 s \(ENOENT; is QEMU running\?\)/,
    );
  });
});

describe("QmpClient when QEMU goes away", () => {
  it("rejects a pending command when QEMU is killed with SIGKILL", async (t) => {
    const qemu = await startBareQemu();
    t.after(qemu.stop);
    const qmp = await QmpClient.connect(qemu.qmpPath);
    const closed = new Promise((resolve) => qmp.on("close", resolve));
    // A stopped process cannot answer: the command is surely pending when QEMU dies.
    qemu.proc.kill("SIGSTOP");
    const pending = qmp.execute("query-status");
    const event = qmp.waitForEvent("RESUME", 60_000);
    // Not a synchronisation: a stopped QEMU cannot answer, so the command is pending however
    // soon it dies; the pause only lets the command reach its socket first.
    await new Promise((r) => setTimeout(r, 100));
    qemu.proc.kill("SIGKILL");
    await assert.rejects(pending, (e: unknown) => e instanceof QmpClosedError && /closed \(QEMU exited\?\); no reply to query-status/.test(e.message));
    await assert.rejects(event, QmpClosedError);
    await closed;
    assert.equal(qmp.closed, true);
    await assert.rejects(qmp.queryStatus(), QmpClosedError);
  });

  it("quits QEMU", async (t) => {
    const qemu = await startBareQemu();
    t.after(qemu.stop);
    const qmp = await QmpClient.connect(qemu.qmpPath);
    const shutdown = qmp.waitForEvent("SHUTDOWN", 5000);
    await qmp.quit();
    assert.equal((await shutdown).data.reason, "host-qmp-quit");
    const r = await qemu.proc;
    assert.equal(r.exitCode, 0);
  });
});
