// The guest image cache's housekeeping (vm/image/image-cache.ts) and `haltpoint image prune`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { listCachedImages, markUsed, pruneImages } from "../vm/image/image-cache.ts";
import { haltpoint } from "./helpers/cli.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const DAY = 86_400_000;

/** A fake cached image whose files were all last touched `daysAgo` days ago. */
function fakeImage(root: string, key: string, daysAgo: number, bytes = 1000): string {
  const dir = join(root, key);
  mkdirSync(dir, { recursive: true });
  const t = new Date(Date.now() - daysAgo * DAY);
  for (const f of ["vmlinuz", "initrd.img", "manifest.json"]) {
    writeFileSync(join(dir, f), Buffer.alloc(bytes));
    utimesSync(join(dir, f), t, t);
  }
  return dir;
}

test("images are listed newest use first; markUsed makes an old image recent", async () => {
  const root = tempDir("hp-imgcache-");
  try {
    fakeImage(root, "aaaaaaaaaaaaaaaa", 40);
    const b = fakeImage(root, "bbbbbbbbbbbbbbbb", 2);
    mkdirSync(join(root, ".build-cccccccccccccccc-x")); // a build in progress is not an image
    let list = await listCachedImages(root);
    assert.deepEqual(list.map((i) => i.key), ["bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa"]);
    assert.equal(list[0]!.bytes, 3000);
    await markUsed(join(root, "aaaaaaaaaaaaaaaa"));
    list = await listCachedImages(root);
    assert.equal(list[0]!.key, "aaaaaaaaaaaaaaaa");
    assert.ok(Date.now() - list[0]!.lastUsedMs < 60_000);
    assert.equal(list[0]!.bytes, 3000, "the last-used marker is not counted as image bytes");
    assert.ok(statSync(b).isDirectory());
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("pruneImages keeps the current image, and with an age only removes images unused that long", async () => {
  const root = tempDir("hp-imgcache-");
  try {
    fakeImage(root, "1111111111111111", 60);
    fakeImage(root, "2222222222222222", 5);
    fakeImage(root, "3333333333333333", 90);
    const stale = await pruneImages(root, { keep: "3333333333333333", unusedForMs: 30 * DAY });
    assert.deepEqual(stale.map((i) => i.key), ["1111111111111111"], "only the unused one that is not kept");
    assert.deepEqual(readdirSync(root).sort(), ["2222222222222222", "3333333333333333"], "nothing else left behind, no scratch");
    const all = await pruneImages(root, { keep: "3333333333333333" });
    assert.deepEqual(all.map((i) => i.key), ["2222222222222222"]);
    assert.deepEqual(readdirSync(root), ["3333333333333333"]);
    assert.deepEqual(await pruneImages(join(root, "missing"), {}), [], "no cache yet: nothing to do");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("haltpoint image prune removes every image but the current one and says what it freed", async () => {
  const root = tempDir("hp-imgcache-");
  try {
    fakeImage(root, "4444444444444444", 1, 2 ** 20);
    fakeImage(root, "5555555555555555", 100, 2 ** 20);
    const r = await haltpoint(["image", "prune", "--cache-dir", root]);
    assert.equal(r.exitCode, 0, r.all);
    assert.match(r.all, /^removed 4444444444444444 \(3\.0 MiB, last used \d{4}-\d\d-\d\dT/m);
    assert.match(r.all, /^removed 5555555555555555 \(3\.0 MiB/m);
    assert.match(r.all, new RegExp(`^2 images and 0 snapshots removed from ${root}, 6\\.0 MiB freed$`, "m"));
    assert.ok(!existsSync(join(root, "4444444444444444")) && !existsSync(join(root, "5555555555555555")));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("pruneSnapshots removes snapshots saved by another QEMU or unused too long, and keeps the rest", async () => {
  const { pruneSnapshots, listSnapshots } = await import("../vm/qemu/snapshot-store.ts");
  const dir = tempDir("hp-snapcache-");
  try {
    // A record written by this QEMU: the same identity snapshotKey uses (commit() writes it).
    const { SnapshotSlot } = await import("../vm/qemu/snapshot-store.ts");
    const make = async (key: string, daysAgo: number, qemu?: string) => {
      const slot = new SnapshotSlot(dir, key);
      writeFileSync(slot.partialFile, Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(2044)]));
      await slot.commit();
      if (qemu) writeFileSync(`${slot.file}.json`, JSON.stringify({ bytes: 2048, qemu }));
      const t = new Date(Date.now() - daysAgo * DAY);
      utimesSync(slot.file, t, t);
      return slot;
    };
    const fresh = await make("aaaaaaaaaaaaaaaa", 1);
    await make("bbbbbbbbbbbbbbbb", 10);
    await make("cccccccccccccccc", 0, "/usr/bin/qemu-system-x86_64:1:1");
    writeFileSync(join(dir, "dddddddddddddddd.zst.partial-999999999"), "half");
    assert.equal(fresh.check(), "ok");
    const removed = await pruneSnapshots(dir, Date.now() - 7 * DAY);
    assert.deepEqual(removed.map((s) => [s.file.slice(-20), s.otherQemu]).sort(), [["bbbbbbbbbbbbbbbb.zst", false], ["cccccccccccccccc.zst", true]]);
    assert.deepEqual((await listSnapshots(dir)).map((s) => s.file), [fresh.file]);
    assert.deepEqual(readdirSync(dir).sort(), ["aaaaaaaaaaaaaaaa.zst", "aaaaaaaaaaaaaaaa.zst.json"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a mapped-RAM snapshot: its RAM file checked by size and digest (again after any write), listed by disk usage, pruned with every file", async () => {
  const { SnapshotSlot, pruneSnapshots, listSnapshots } = await import("../vm/qemu/snapshot-store.ts");
  const dir = tempDir("hp-snapcache-");
  try {
    const slot = new SnapshotSlot(dir, "eeeeeeeeeeeeeeee", false, true);
    writeFileSync(slot.partialFile, Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(2044)]));
    writeFileSync(slot.partialRamFile, Buffer.alloc(1 << 20, 7));
    await slot.commit();
    assert.equal(slot.check(), "ok");
    assert.equal(await slot.verify(), undefined);
    // Written in place, same size: the file is no longer the one last found whole, and its digest says so.
    const ram = readFileSync(slot.ramFile);
    ram[100] ^= 1;
    writeFileSync(slot.ramFile, ram);
    assert.equal(slot.check(), "ok", "the size is right");
    assert.equal(await slot.verify(), "its RAM file's bytes differ from the saved ones (sha256)");
    ram[100] ^= 1;
    writeFileSync(slot.ramFile, ram);
    assert.equal(await slot.verify(), undefined, "the saved bytes again");
    writeFileSync(slot.ramFile, ram.subarray(0, 4096));
    assert.deepEqual(slot.check(), { damaged: `its RAM file has 4096 bytes, ${1 << 20} were saved` });
    const [listed] = await listSnapshots(dir);
    assert.ok(listed && listed.bytes >= 4096, "disk usage counts the RAM file");
    assert.equal((await pruneSnapshots(dir, Date.now() + DAY)).length, 1);
    assert.deepEqual(readdirSync(dir), [], "the state, its record, the RAM file and its stamp all went");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
