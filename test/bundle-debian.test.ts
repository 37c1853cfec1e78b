// Bundles carry every kind of machine (issue #24): a CI-like run of a failing test with a
// Debian guest (a service holding a value in memory, a file synced to its disk), a haltpoint
// guest and a local machine saves one bundle with all three; copied elsewhere and revived
// with an empty cache, the service answers with its value, the file is read back from the
// bundle's disk (the page cache dropped), the local machine's file is in its sandbox, SSH
// reaches the Debian guest, the QEMUs run under seccomp; a bundle whose disk was pointed at
// another file, or whose image is missing, is refused in one line. A guest on the user's own
// disk image revives with its write and the image, the image itself gone from the host.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { execa } from "execa";
import { BIN, haltpoint, watchOutput } from "./helpers/cli.ts";
import { qemuProcesses, qemuRuntime } from "./helpers/qemu.ts";
import { Peer } from "./fixtures/hooks/peer.ts";
import { signBundle } from "../hooks/bundles/bundle-signature.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const base = tempDir("hp-bundle-debian-");
after(() => rmSync(base, { recursive: true, force: true }));
const emptyCache = join(base, "empty-cache");
mkdirSync(emptyCache);
process.env.XDG_CONFIG_HOME = join(base, "config");
// The compressed images saves keep for the next save (vm/qemu/saved-disk.ts): this file's own.
process.env.HALTPOINT_BUNDLE_IMAGE_CACHE = join(base, "bundle-images");

async function consoleSession(port: string, lines: string[]): Promise<string> {
  const nc = new Peer("nc", ["127.0.0.1", port]);
  try {
    await nc.expect(/> $/m, 20_000);
    for (const l of lines) {
      nc.send(l + "\n");
      await nc.expect(/> $/m, 90_000);
    }
    return nc.output;
  } finally {
    nc.child.kill();
  }
}

let bundle = "";

test("a CI-like run of a failing test with a Debian guest, a haltpoint guest and a local machine saves one bundle with all three", async () => {
  const r = await haltpoint(["run", "test/fixtures/bundle/debian-state.vmtest.ts", "--debug-hook", "--log-dir", join(base, "ci-logs")], { env: { CI: "true", NO_COLOR: "1" }, timeout: 400_000 });
  assert.equal(r.exitCode, 1, r.all);
  const saved = /^!!! debian-state#1: saved as a bundle: (\S+) \((\d+\.\d) MiB in [\d.]+ s; base image ([\d.]+) MiB, shared\)$/m.exec(r.all);
  assert.ok(saved, r.all);
  bundle = saved[1]!;
  assert.doesNotMatch(r.all, /not in the bundle/);
  assert.match(r.all, /^!!! debian-state#1: notes \(local\): its files are in the bundle, its processes cannot be carried$/m);
  const m = JSON.parse(readFileSync(join(bundle, "bundle.json"), "utf8"));
  assert.deepEqual(m.machines.map((x: { name: string; backend: string }) => `${x.name}:${x.backend}`), ["web:qemu", "tiny:qemu", "notes:local"]);
  assert.equal(m.images.length, 1, "the Debian image, once");
  assert.equal(m.machines[0].disk.image, m.images[0].path);
  assert.equal(statSync(join(bundle, m.images[0].path)).size, m.images[0].bytes);
  assert.equal(Number(saved[3]), Number((m.images[0].bytes / 2 ** 20).toFixed(1)));
  // Kept for the next save of the same image (private: a user's image may hold secrets).
  const kept = readdirSync(join(base, "bundle-images"));
  assert.equal(kept.length, 1, kept.join(" "));
  assert.equal(statSync(join(base, "bundle-images", kept[0]!)).mode & 0o777, 0o600);
  assert.deepEqual(await qemuProcesses(), []);
});

test("revived from a copy with an empty cache: the service's memory, the file on disk, the local machine's files, ssh; released, nothing is left", async () => {
  assert.ok(bundle, "the first test made a bundle");
  const copy = join(base, "copied-bundle");
  cpSync(bundle, copy, { recursive: true });
  const child = haltpoint(["revive", copy, "--log-dir", join(base, "revive-logs")], { env: { XDG_CACHE_HOME: emptyCache, NO_COLOR: "1" }, timeout: 300_000 });
  const killer = setTimeout(() => child.kill("SIGKILL"), 290_000);
  try {
    const out = watchOutput(child, 150_000);
    const id = (await out.waitFor(/^!!! debian-state#1: HALTED at breakpoint (\d+): machine web: command `test -e \/etc\/the-config-the-test-expected` failed \(exit code 1\)$/m))[1]!;
    await out.waitFor(/^!!! debian-state#1: release:/m);
    assert.match(out.text(), /^haltpoint revive: machine notes \(local\): a new shell in a sandbox with its files as they were; its processes could not be carried$/m);
    const pids = await qemuProcesses();
    assert.equal(pids.length, 2, "the two revived guests");
    for (const pid of pids) assert.match(readFileSync(`/proc/${pid}/status`, "utf8"), /^Seccomp:\t2$/m, `qemu ${pid} runs in seccomp filter mode`);
    const session = await consoleSession(id, [
      "await thaw()",
      // The page cache dropped: the file is read from the bundle's disk, not from the saved RAM.
      `await web.succeed("nc -N 127.0.0.1 7000 </dev/null; sync; echo 3 > /proc/sys/vm/drop_caches; cat /var/lib/hp-disk-state; grep -c bookworm /etc/os-release")`,
      `await tiny.succeed("cat /tmp/in-ram")`,
      `await notes.succeed("cat notes.txt")`,
      "await freeze()",
    ]);
    // (node's inspect splits a long string in lines: joined again)
    assert.match(session.replace(/' \+\s+'/g, ""), /'held-in-memory-42\\non-disk-state\\n[1-9]\d*\\n'/, session);
    assert.match(session, /'tiny-in-ram\\n'/);
    assert.match(session, /'written-by-the-test\\n'/);
    const ssh = await haltpoint(["ssh", id, "web", "--", "-o", "BatchMode=yes", "cat /var/lib/hp-disk-state; hostname"], { timeout: 90_000 });
    assert.equal(ssh.exitCode, 0, ssh.all);
    assert.match(ssh.stdout, /^on-disk-state\nweb$/m);
    assert.equal((await haltpoint(["release", id])).exitCode, 0);
    const r = await child;
    assert.equal(r.exitCode, 0, r.all);
    assert.deepEqual(readdirSync(emptyCache), [], "no image was built, nothing was cached");
    assert.deepEqual(await qemuProcesses(), []);
  } finally {
    clearTimeout(killer);
    child.kill("SIGKILL");
  }
});

test("a bundle whose disk names another backing file, or whose image is missing, is refused in one line", async () => {
  assert.ok(bundle, "the first test made a bundle");
  const refuse = async (dir: string): Promise<string> => {
    const r = await execa("node", [BIN, "revive", dir], { reject: false, all: true, env: { NO_COLOR: "1" } });
    assert.equal(r.exitCode, 2, r.all);
    assert.equal(r.all.trim().split("\n").length, 1, r.all);
    return r.all.trim();
  };
  // Pointed at a host file, with the manifest's size and digest made to match and signed again:
  // the header itself is refused.
  const tampered = join(base, "tampered");
  cpSync(bundle, tampered, { recursive: true });
  const disk = join(tampered, "web", "disk.qcow2");
  await execa("qemu-img", ["rebase", "-u", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", disk]);
  const m = JSON.parse(readFileSync(join(tampered, "bundle.json"), "utf8"));
  const bytes = readFileSync(disk);
  m.machines[0].disk.writes = { ...m.machines[0].disk.writes, bytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") };
  writeFileSync(join(tampered, "bundle.json"), JSON.stringify(m));
  signBundle(tampered);
  const image = m.images[0].path as string;
  assert.equal(await refuse(tampered), `haltpoint revive: cannot revive ${tampered}: it is damaged: machine web's disk writes (web/disk.qcow2) are refused: its backing file is "/etc/passwd", not the bundle's "../${image}"`);
  rmSync(join(tampered, image));
  assert.equal(await refuse(tampered), `haltpoint revive: cannot revive ${tampered}: it is damaged: a disk image (${image}) is missing`);
  assert.ok(!existsSync(join(base, "revive-logs-tampered")));
  assert.deepEqual(await qemuProcesses(), []);
});

test("a guest on the user's own disk image: its write and the image travel in the bundle, revived with the image gone from the host", async () => {
  const rt = await qemuRuntime();
  const disk = join(base, "user-disk.img");
  const image = Buffer.alloc(4 * 2 ** 20);
  image.write("BASE-OF-THE-USER", 0);
  writeFileSync(disk, image);
  const env = { CI: "true", NO_COLOR: "1", HP_BUNDLE_KERNEL: rt.kernel, HP_BUNDLE_INITRD: rt.initrd, HP_BUNDLE_DISK: disk };
  const r = await haltpoint(["run", "test/fixtures/bundle/disk-image.vmtest.ts", "--debug-hook", "--log-dir", join(base, "disk-logs")], { env, timeout: 300_000 });
  assert.equal(r.exitCode, 1, r.all);
  const saved = /^!!! disk-image#1: saved as a bundle: (\S+) \([\d.]+ MiB in [\d.]+ s; base image [\d.]+ MiB, shared\)$/m.exec(r.all);
  assert.ok(saved, r.all);
  assert.ok(readFileSync(disk).equals(image), "the user's image is untouched");
  rmSync(disk);
  const child = haltpoint(["revive", saved[1]!, "--log-dir", join(base, "disk-revive-logs")], { env: { XDG_CACHE_HOME: emptyCache, NO_COLOR: "1" }, timeout: 200_000 });
  const killer = setTimeout(() => child.kill("SIGKILL"), 190_000);
  try {
    const out = watchOutput(child, 120_000);
    const id = (await out.waitFor(/^!!! disk-image#1: HALTED at breakpoint (\d+):/m))[1]!;
    await out.waitFor(/^!!! disk-image#1: release:/m);
    const session = await consoleSession(id, ["await thaw()", `await disked.succeed("sync; echo 3 > /proc/sys/vm/drop_caches; head -c 16 /dev/vda; echo; dd if=/dev/vda bs=4096 skip=1 count=1 2>/dev/null | head -c 16")`]);
    assert.match(session, /'BASE-OF-THE-USER\\nWRITTEN-BY-GUEST'/, session);
    assert.equal((await haltpoint(["release", id])).exitCode, 0);
    assert.equal((await child).exitCode, 0);
    assert.deepEqual(await qemuProcesses(), []);
  } finally {
    clearTimeout(killer);
    child.kill("SIGKILL");
  }
});

test("a bundle of local machines only revives as a sandbox shell with their files (links kept as links); their processes are gone", async () => {
  const r = await haltpoint(["run", "test/fixtures/bundle/local-only.vmtest.ts", "--debug-hook", "--log-dir", join(base, "local-logs")], { env: { CI: "true", NO_COLOR: "1" }, timeout: 120_000 });
  assert.equal(r.exitCode, 1, r.all);
  const saved = /^!!! local-only#1: saved as a bundle: (\S+) \([\d.]+ MiB in [\d.]+ s\)$/m.exec(r.all);
  assert.ok(saved, r.all);
  assert.match(r.all, /^!!! local-only#1: box \(local\): its files are in the bundle, its processes cannot be carried$/m);
  assert.match(r.all, /^!!! local-only#1: revive: \S+ revive \S+$/m);
  const child = haltpoint(["revive", saved[1]!, "--log-dir", join(base, "local-revive-logs")], { env: { NO_COLOR: "1" }, timeout: 100_000 });
  const killer = setTimeout(() => child.kill("SIGKILL"), 90_000);
  try {
    const out = watchOutput(child, 60_000);
    const id = (await out.waitFor(/^!!! local-only#1: HALTED at breakpoint (\d+): machine box: command `test -e expected-file` failed \(exit code 1\)$/m))[1]!;
    await out.waitFor(/^!!! local-only#1: release:/m);
    const session = await consoleSession(id, ["await thaw()", `await box.succeed("cat out/report.txt; readlink out/link; pgrep -c -f 'sleep 1000' || true")`]);
    assert.match(session, /'result-of-the-run\\n\/etc\/hostname\\n0\\n'/, session);
    assert.equal((await haltpoint(["release", id])).exitCode, 0);
    assert.equal((await child).exitCode, 0);
  } finally {
    clearTimeout(killer);
    child.kill("SIGKILL");
  }
  // The files are under the signature too: one changed after the save is refused.
  writeFileSync(join(saved[1]!, "box", "files", "out", "report.txt"), "changed-afterwards\n");
  const r2 = await execa("node", [BIN, "revive", saved[1]!], { reject: false, all: true, env: { NO_COLOR: "1" } });
  assert.equal(r2.exitCode, 2, r2.all);
  assert.equal(r2.all.trim(), `haltpoint revive: cannot revive ${saved[1]}: it is damaged: machine box's files (box/files): they differ from the saved ones (sha256 of the tree)`);
});

test("haltpoint save on a live Debian breakpoint says the image's share, and the guest's disk works on after it", async () => {
  const child = haltpoint(["run", "test/fixtures/bundle/debian-state.vmtest.ts", "--debug-hook", "--log-dir", join(base, "live-logs")], { env: { CI: "false", NO_COLOR: "1" }, timeout: 300_000 });
  const killer = setTimeout(() => child.kill("SIGKILL"), 290_000);
  try {
    const out = watchOutput(child, 200_000);
    const id = (await out.waitFor(/^!!! debian-state#1: HALTED at breakpoint (\d+):/m))[1]!;
    await out.waitFor(/^!!! debian-state#1: release:/m);
    const again = join(base, "saved-live");
    const save = await haltpoint(["save", id, "--out", again], { timeout: 200_000 });
    assert.equal(save.exitCode, 0, save.all);
    assert.match(save.stdout, new RegExp(`^saved breakpoint ${id} \\(debian-state#1\\) to ${again}: [\\d.]+ MiB in [\\d.]+ s; base image [\\d.]+ MiB, shared; it is still halted$`, "m"));
    // The save migrated the guest's memory, which hands its disk over; thawed, the guest writes and reads it.
    const session = await consoleSession(id, ["await thaw()", `await web.succeed("echo after-the-save > /var/lib/after && sync && echo 3 > /proc/sys/vm/drop_caches && cat /var/lib/after /var/lib/hp-disk-state")`]);
    assert.match(session.replace(/' \+\s+'/g, ""), /'after-the-save\\non-disk-state\\n'/, session);
    assert.equal((await haltpoint(["release", id])).exitCode, 0);
    assert.equal((await child).exitCode, 1);
    assert.deepEqual(await qemuProcesses(), []);
  } finally {
    clearTimeout(killer);
    child.kill("SIGKILL");
  }
});
