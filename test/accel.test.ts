// Choosing the accelerator: 'auto' boots the real image under KVM once per host, QEMU
// and image, and caches the verdict; an explicit choice never probes.

import assert from "node:assert/strict";
import { constants } from "node:fs";
import { access, mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import { buildImage, type GuestImage } from "../vm/image/build-image.ts";
import { chooseAccel } from "../vm/qemu/accel.ts";

/**
 * On the project's build machines /dev/kvm opens but KVM guests do not boot (nested
 * virtualisation), so the probe must say tcg. Where KVM really works, run with
 * HALTPOINT_EXPECT_ACCEL=kvm.
 */
const EXPECTED = process.env.HALTPOINT_EXPECT_ACCEL ?? "tcg";

async function kvmOpens(): Promise<boolean> {
  try {
    await (await open("/dev/kvm", constants.O_RDWR)).close();
    return true;
  } catch {
    return false;
  }
}

async function probesRunning(): Promise<boolean> {
  const r = await execa("pgrep", ["-f", "haltpoint-kvm-probe"], { reject: false });
  return r.exitCode === 0;
}

describe("chooseAccel", () => {
  let image: GuestImage;
  let dir: string;

  before(async () => {
    // The default cache: shared with `haltpoint image build`, so usually a cache hit.
    image = await buildImage();
    dir = await mkdtemp(join(tmpdir(), "hp-accel-test-"));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("'auto' probes with a real KVM boot once, logs the choice and caches it", async (t) => {
    const cacheFile = join(dir, "auto", "accel.json");
    const log: string[] = [];
    if (!(await kvmOpens())) {
      const r = await chooseAccel({ requested: "auto", image, cacheFile, log: (l) => log.push(l) });
      assert.equal(r.accel, "tcg");
      assert.match(r.reason, /\/dev\/kvm cannot be opened read-write/);
      t.skip("/dev/kvm cannot be opened here: nothing to probe");
      return;
    }
    const started = Date.now();
    // Two callers at once share one probe.
    const [first, second] = await Promise.all([
      chooseAccel({ requested: "auto", image, cacheFile, log: (l) => log.push(l) }),
      chooseAccel({ requested: "auto", image, cacheFile, log: (l) => log.push(l) }),
    ]);
    t.diagnostic(`probe verdict ${first.accel} after ${Date.now() - started} ms: ${first.reason}`);
    assert.equal(first.accel, EXPECTED);
    assert.deepEqual(second, first);
    assert.equal(first.cached, false);
    assert.match(first.reason, /^KVM probe boot /);
    assert.equal(log.filter((l) => l.includes("probing KVM")).length, 1);
    assert.ok(log.includes(`accel: ${EXPECTED} — ${first.reason}`), "the choice and its reason are logged");
    assert.equal(await probesRunning(), false, "the probe VM is gone");

    const cache = JSON.parse(await readFile(cacheFile, "utf8"));
    const keys = Object.keys(cache.verdicts);
    assert.equal(keys.length, 1);
    assert.ok(keys[0]!.endsWith(`|${image.key}`));
    assert.match(keys[0]!, /QEMU emulator version/);

    const t0 = Date.now();
    const again = await chooseAccel({ requested: "auto", image, cacheFile });
    assert.equal(again.cached, true);
    assert.equal(again.accel, first.accel);
    assert.ok(Date.now() - t0 < 2000, "a cached verdict needs no probe");
  });

  it("an explicit 'tcg' (or 'kvm') skips the probe and the cache", async () => {
    const cacheFile = join(dir, "explicit", "accel.json");
    const t0 = Date.now();
    for (const requested of ["tcg", "kvm"] as const) {
      const r = await chooseAccel({ requested, image, cacheFile });
      assert.deepEqual(r, { accel: requested, reason: `${requested} requested explicitly`, cached: false });
    }
    assert.ok(Date.now() - t0 < 500);
    await assert.rejects(access(cacheFile), /ENOENT/);
  });

  it("'auto' without a usable KVM device picks tcg without probing", async () => {
    const r = await chooseAccel({ requested: "auto", image, cacheFile: join(dir, "nokvm.json"), kvmDevice: join(dir, "no-kvm") });
    assert.equal(r.accel, "tcg");
    assert.match(r.reason, /no-kvm cannot be opened read-write \(ENOENT\)/);
    await assert.rejects(access(join(dir, "nokvm.json")), /ENOENT/);
  });
});
