// Snapshot boots through the CLI on real guests: the first machine of a shape saves a
// snapshot, the others start from it and are individuals (randomness, hostname, clock, MAC,
// address); a damaged snapshot falls back to a cold boot; --no-snapshot-boot boots cold.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { haltpoint } from "./helpers/cli.ts";
import { qemuProcesses } from "./helpers/qemu.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const dir = tempDir("hp-snapshot-");
const env = { HP_SNAP_APPEND: `hp.snaptest=${randomBytes(6).toString("hex")}` };
const saved = new Set<string>();

/** Every file of a snapshot (vm/qemu/snapshot-store.ts): the state stream, its record, the mapped RAM file and its stamp. */
const partsOf = (f: string) => [f, `${f}.json`, f.replace(/\.zst$/, ".ram"), f.replace(/\.zst$/, ".ram.whole")];

after(() => {
  for (const f of saved) for (const part of partsOf(f)) rmSync(part, { force: true });
  rmSync(dir, { recursive: true, force: true });
});

interface Facts {
  node: string;
  hostname: string;
  guestEpoch: number;
  hostBeforeMs: number;
  hostAfterMs: number;
  random: string;
  mac: string;
  ip: string;
  /** Descriptors of the restore prep (guest-restore-prep.ts) a command inherits: none. */
  prepFds: number;
  /** Lines of the CRNG-reseed record a restored guest's identity leaves (2), 0 for the saver. */
  reseedLines: number;
}

async function run(extra: string[], name: string) {
  const r = await haltpoint(["run", "test/fixtures/snapshot", "--jobs", "1", "--log-dir", join(dir, name), ...extra], { env, timeout: 600_000 });
  for (const m of r.all.matchAll(/snapshot saved for later machines of this shape: (\S+\.zst)/g)) saved.add(m[1]!);
  const facts = [...r.all.matchAll(/FACTS (\{.*\})/g)].map((m) => JSON.parse(m[1]!) as Facts);
  return { ...r, facts };
}

test("the first machine saves, the rest restore, and every restored guest is its own machine", async () => {
  const r = await run(["--repeat", "3"], "first");
  assert.equal(r.exitCode, 0, r.all);
  assert.equal(saved.size, 1, `one snapshot saved:\n${r.all}`);
  assert.equal((r.all.match(/starting qemu \([^)]*from snapshot/g) ?? []).length, 5, `the other five machines restored:\n${r.all}`);
  assert.match(r.all, /backdoor shell ready \(restored in \d+\.\d\d s\)/);
  // A hunt of one test: runs 2 and 3 took the guests their worker started while the run before ran
  // (worker/machines-ahead.ts); the facts below hold for them as for guests a run starts itself.
  assert.equal((r.all.match(/pair#[23]: machines taken ahead: a, b, started while the run before this one ran/g) ?? []).length, 2, r.all);
  // The saver prepared its shell for the restores (a drained /dev/kmsg, the clock helper, __hp_restored).
  assert.match(r.all, /shell prepared for restores: identity kmsg clock-helper/);
  assert.equal((r.all.match(/PINGS OK/g) ?? []).length, 3, "two nodes from one snapshot reach each other by name, in every run");
  assert.equal(r.facts.length, 6);
  assert.equal(r.facts.filter((f) => f.reseedLines === 2).length, 5, `the five restored guests waited for their CRNG's reseed before their first command: ${r.facts.map((f) => f.reseedLines).join(" ")}`);
  assert.equal(new Set(r.facts.map((f) => f.random)).size, 6, `/dev/urandom differs on every guest: ${r.facts.map((f) => f.random).join(" ")}`);
  for (const f of r.facts) {
    assert.equal(f.hostname, f.node, "the node's hostname");
    assert.equal(f.prepFds, 0, `${f.node}: no command inherits the prep's descriptors (the saver closes them, a restore once used)`);
    assert.ok(f.guestEpoch >= Math.floor(f.hostBeforeMs / 1000) - 1 && f.guestEpoch <= Math.ceil(f.hostAfterMs / 1000) + 1, `${f.node}'s clock (${f.guestEpoch}) is the host's (${f.hostBeforeMs / 1000}–${f.hostAfterMs / 1000}) within a second`);
  }
  for (let i = 0; i < 6; i += 2) {
    const [a, b] = [r.facts[i]!, r.facts[i + 1]!];
    assert.notEqual(a.mac, b.mac, "distinct MACs");
    assert.notEqual(a.ip, b.ip, "distinct addresses");
    assert.match(a.ip, /^\d+\.\d+\.\d+\.\d+\/24$/);
  }
});

test("a damaged snapshot: one line, a cold boot that saves a good one, and the run passes", async () => {
  const [file] = [...saved];
  assert.ok(file && existsSync(file), "the first test saved a snapshot");
  // Overwritten (found before QEMU is started) ...
  writeFileSync(file, randomBytes(4096));
  let r = await run([], "overwritten");
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /a: snapshot \S+ is damaged \(4096 bytes, \d+ were saved\): removed it, booting cold\n/);
  assert.match(r.all, /a: snapshot saved for later machines/);
  assert.match(r.all, /b: starting qemu \([^)]*from snapshot/, "the next machine restores the snapshot saved after the cold boot");
  // ... and corrupt inside a stream of the right size (found when QEMU cannot load it).
  const bytes = readFileSync(file);
  randomBytes(1024).copy(bytes, bytes.length >> 1);
  writeFileSync(file, bytes);
  r = await run([], "corrupt");
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /a: could not start from snapshot \S+ \(.+\): removed it, booting cold\n/);
  assert.match(r.all, /b: starting qemu \([^)]*from snapshot/);
  assert.equal((r.all.match(/PINGS OK/g) ?? []).length, 1);
});

test("a damaged RAM file: its digest (same size, written in place) or its size finds it; a cold boot saves a good one", async () => {
  const [file] = [...saved];
  const ram = file!.replace(/\.zst$/, ".ram");
  assert.ok(existsSync(ram), "snapshots of haltpoint's guest have their RAM in a file of its own");
  // Written in place (a restore maps the file, so a broken page would be the guest's memory) ...
  const bytes = readFileSync(ram);
  randomBytes(4096).copy(bytes, 1 << 20);
  writeFileSync(ram, bytes);
  let r = await run([], "ram-written");
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /a: could not start from snapshot \S+ \(its RAM file's bytes differ from the saved ones \(sha256\)/);
  assert.match(r.all, /a: snapshot saved for later machines/);
  assert.match(r.all, /b: starting qemu \([^)]*from snapshot/);
  // ... and cut short (found before QEMU is started).
  writeFileSync(ram, readFileSync(ram).subarray(0, 4096));
  r = await run([], "ram-truncated");
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /a: snapshot \S+ is damaged \(its RAM file has 4096 bytes, \d+ were saved\): removed it, booting cold\n/);
  assert.match(r.all, /b: starting qemu \([^)]*from snapshot/);
  assert.equal((r.all.match(/PINGS OK/g) ?? []).length, 1);
});

test("--no-snapshot-boot boots every machine cold and saves nothing", async () => {
  const before = saved.size;
  const r = await run(["--no-snapshot-boot"], "cold");
  assert.equal(r.exitCode, 0, r.all);
  assert.equal((r.all.match(/starting qemu \([^)]*cold boot\)/g) ?? []).length, 2, r.all);
  assert.doesNotMatch(r.all, /from snapshot|snapshot saved/);
  assert.equal(saved.size, before);
  assert.equal((r.all.match(/PINGS OK/g) ?? []).length, 1);
});

test("no QEMU outlives the runs", async () => {
  assert.deepEqual(await qemuProcesses(), []);
});
