// Debian systemd guests on real QEMU: one image build (cached: every later call and run reuses
// it), one cold boot that saves a snapshot, and restores for every other machine. Proves PID 1
// is systemd, a packaged service (lighttpd) reached from a second machine by node name, the
// systemd calls on real units (a failing unit, a unit with no job, stop/start, properties),
// root SSH without a password, a later run starting from the snapshot, the image brought as a
// start script and as a disk with its own bootloader, and nothing left behind.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { BIN, ROOT, haltpoint, watchOutput } from "./helpers/cli.ts";
import { qemuProcesses } from "./helpers/qemu.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const dir = tempDir("hp-debian-");
const PACKAGES = "curl,lighttpd";
// An unused kernel word: this file's machines have a snapshot shape of their own.
const env = { HP_DEB_APPEND: `hp.debtest=${randomBytes(6).toString("hex")}` };
const saved = new Set<string>();

after(() => {
  for (const f of saved) for (const g of [f, `${f}.json`, f.replace(/\.zst$/, ".disk.qcow2")]) rmSync(g, { force: true });
  rmSync(dir, { recursive: true, force: true });
});

async function run(name: string, extra: string[] = [], during?: (out: ReturnType<typeof watchOutput>) => Promise<void>) {
  const child = haltpoint(["run", "test/fixtures/debian", "--jobs", "1", "--log-dir", join(dir, name), ...extra], { env: { ...env, ...(during ? { HP_DEB_SSH: "1", HP_DEB_BRIEF: "1" } : {}) }, timeout: 900_000 });
  if (during) await during(watchOutput(child, 600_000)).catch((e) => (child.kill(), Promise.reject(e)));
  const r = await child;
  for (const m of r.all.matchAll(/snapshot saved for later machines of this shape: (\S+\.zst)/g)) saved.add(m[1]!);
  const facts: Record<string, unknown> = Object.assign({}, ...[...r.all.matchAll(/FACT (\{.*\})/g)].map((m) => JSON.parse(m[1]!)));
  return { ...r, facts };
}

let built: Awaited<ReturnType<typeof haltpoint>>;
before(async () => {
  // The one build of this file (a no-op when the cache has it); the runs below reuse it.
  // With the "bring your own guest" forms of it: a start script and a disk with its own bootloader.
  built = await haltpoint(["image", "build", "--debian", PACKAGES, "--start-script", join(dir, "byo"), "--disk", join(dir, "byo", "debian.img")], { timeout: 900_000 });
});

test("haltpoint image build --debian builds (or reuses) the image, and a second build reuses it", async () => {
  assert.equal(built.exitCode, 0, built.all);
  assert.match(built.stdout, /^key: +[0-9a-f]{16}$/m);
  assert.match(built.stdout, /^packages: curl lighttpd$/m);
  for (const f of ["kernel", "initrd", "rootfs"]) {
    const path = new RegExp(`^${f}: +(\\S+)`, "m").exec(built.stdout)?.[1];
    assert.ok(path && existsSync(path), `${f} exists: ${path}`);
  }
  const again = await haltpoint(["image", "build", "--debian", "lighttpd,curl"]);
  assert.equal(again.exitCode, 0, again.all);
  assert.match(again.stderr, /reused cached image/, "the same list in another order is the same image");
  assert.equal(/^key: +(\S+)/m.exec(again.stdout)?.[1], /^key: +(\S+)/m.exec(built.stdout)?.[1]);
  const list = await haltpoint(["image", "list"]);
  assert.equal(list.exitCode, 0, list.all);
  assert.match(list.stdout, new RegExp(`^${/^key: +(\S+)/m.exec(built.stdout)?.[1]}  debian .* packages: curl lighttpd$`, "m"));
});

test("without root a build is one line saying so and how to build ahead", async () => {
  const cache = join(dir, "nobody-cache");
  mkdirSync(cache);
  chmodSync(cache, 0o777);
  const r = await execa("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "env", `HOME=${cache}`, `XDG_CACHE_HOME=${cache}`, "node", BIN, "image", "build", "--debian", "hello"], {
    cwd: ROOT,
    reject: false,
    all: true,
  });
  assert.equal(r.exitCode, 2, r.all);
  assert.equal(r.all.trim().split("\n").length, 1, r.all);
  assert.match(r.all, /needs root .*build it ahead as root: sudo haltpoint image build --debian hello$/);
});

test("a bad image option is one line naming the file, the node and the option", async () => {
  const r = await haltpoint(["run", "test/fixtures/debian-bad", "--log-dir", join(dir, "bad")]);
  assert.equal(r.exitCode, 2, r.all);
  assert.match(r.all, /bad-image\.vmtest\.ts: node 'web': image\.packages: "Not A Package" is not a Debian package name$/m);
  assert.match(r.all, /local-image\.vmtest\.ts: node 'box': image \(a Debian guest\) needs backend "qemu", not "local"$/m);
  // A node with an image and no backend is a qemu guest, whatever --backend says for the others.
  const list = await haltpoint(["list", "--json", "--backend", "local", "examples/debian-services.vmtest.ts"]);
  assert.equal(list.exitCode, 0, list.all);
  const nodes = JSON.parse(list.stdout).tests[0].nodes;
  assert.deepEqual(nodes.map((n: { name: string; backend: string }) => [n.name, n.backend]), [
    ["server", "qemu"],
    ["client", "qemu"],
  ]);
});

test("image list and prune --debian on a cache of their own", async () => {
  const cache = join(dir, "cache");
  const img = join(cache, "debian", "0123456789abcdef");
  mkdirSync(img, { recursive: true });
  for (const f of ["vmlinuz", "initrd.img", "rootfs.img"]) writeFileSync(join(img, f), "x".repeat(4096));
  writeFileSync(join(img, "manifest.json"), JSON.stringify({ key: "0123456789abcdef", kind: "debian", packages: ["hello"], kernelVersion: "6.1.0-0-amd64" }));
  // A snapshot of it (a state stream and a 1 MiB RAM file): listed under it with its disk usage.
  mkdirSync(join(img, "snapshots"));
  writeFileSync(join(img, "snapshots", "fedcba9876543210.zst"), "x".repeat(4096));
  writeFileSync(join(img, "snapshots", "fedcba9876543210.ram"), Buffer.alloc(1 << 20, 1));
  const list = await haltpoint(["image", "list", "--cache-dir", cache]);
  assert.match(list.stdout, /^0123456789abcdef {2}debian .*packages: hello$/m, list.all);
  assert.match(list.stdout, /^ {2}snapshot fedcba9876543210 +1\.0 MiB on disk {2}last used \d{4}-/m, list.all);
  const kept = await haltpoint(["image", "prune", "--cache-dir", cache]);
  assert.equal(kept.exitCode, 0, kept.all);
  assert.ok(existsSync(img), `a Debian image used today is kept by a plain prune:\n${kept.all}`);
  const pruned = await haltpoint(["image", "prune", "--debian", "--cache-dir", cache]);
  assert.match(pruned.stdout, /^removed debian 0123456789abcdef .*packages: hello/m, pruned.all);
  assert.ok(!existsSync(img));
});

test("two Debian guests: systemd, lighttpd reached by name, the systemd calls; a later run restores both", async () => {
  const first = await run("first");
  assert.equal(first.exitCode, 0, first.all);
  assert.equal(saved.size, 1, `the first machine saved a snapshot:\n${first.all}`);
  assert.match(first.all, /client: starting qemu \([^)]*from snapshot/, "the second machine of the same shape restored it");
  const f = first.facts;
  assert.equal(f.pid1, "systemd");
  assert.deepEqual(f.hostnames, ["server", "client"]);
  // The saver's shell prepared the perl clock helper (Debian has no busybox; perl-base is Essential).
  assert.match(first.all, /shell prepared for restores: identity kmsg clock-helper/);
  const clock = f.clientClock as { epoch: number; hostBeforeMs: number; hostAfterMs: number; reseed: string[] };
  assert.ok(clock.epoch >= Math.floor(clock.hostBeforeMs / 1000) - 1 && clock.epoch <= Math.ceil(clock.hostAfterMs / 1000) + 1, `the restored client's clock (${clock.epoch}) is the host's within a second: ${JSON.stringify(clock)}`);
  // Two uptimes: the wait read on through the clock's jump (bash times `read -t` by the wall
  // clock), not the rest of a kernel record left in bash's read buffer.
  assert.equal(clock.reseed.filter((l) => /^hp-reseed-uptime \d+\.\d+$/.test(l)).length, 2, `the CRNG wait's uptimes: ${JSON.stringify(clock.reseed)}`);
  assert.equal(f.page, "hello from debian", "the client fetched the server's lighttpd page by the server's name");
  assert.deepEqual(f.info, { Id: "lighttpd.service", ActiveState: "active", UnitFileState: "enabled" }, "enabled as Debian enables it");
  assert.ok(typeof f.mainPid === "number" && f.mainPid > 0 && f.mainPid === f.pidofLighttpd, `MainPID ${f.mainPid} is lighttpd's pid ${f.pidofLighttpd}`);
  assert.deepEqual(f.stopStart, { stopStatus: 0, curlWhileStopped: 7, startStatus: 0, page: "hello from debian" }, "stopped: connection refused; started: served again");
  assert.match(String(f.requireWrongState), /^machine server: unit lighttpd\.service is active \(.*\), expected inactive/);
  assert.match(String(f.failedWait), /^machine server: unit hp-broken\.service reached state failed \(ActiveState failed, .*Result exit-code\)/);
  assert.match(String(f.failedWait), /hp-broken-says-bye/, "the unit's journal lines are in the error");
  assert.match(String(f.inactiveWait), /^machine server: unit hp-no-such\.service is inactive and there are no pending jobs \(.*LoadState not-found\)/);
  assert.equal(f.journalHasLine, true);
  assert.equal(f.ssh, "server", "root logged in over SSH with no password");
  assert.deepEqual(f.isEnabled, { status: 0, stdout: "enabled" }, "systemctl with a string of arguments");
  assert.deepEqual(f.userUnit, { startStatus: 0, owner: "alice" }, "a user unit started, awaited and read through systemctl --user");
  assert.match(String(f.userUnitSystemWide), /^machine server: unit hp-user\.service is inactive .*expected active/, "the user's unit is not a system unit");
  assert.match(String(f.timeoutError), /^machine server: command `sleep 600\.5; echo late` timed out after 3 s/);
  assert.equal(f.sleepLeft, 1, "the timed-out command's process was killed in the guest");

  // The later run, with the SSH backdoor: the host logs in to a restored Debian guest (the
  // fixture's systemd calls are left out: HP_DEB_BRIEF).
  let viaBackdoor: Awaited<ReturnType<typeof execa>> | undefined;
  let runSoFar = "";
  const later = await run("later", ["--ssh-backdoor"], async (out) => {
    const line = (await out.waitFor(/^debian-services#1 server: ssh backdoor: (ssh -o ProxyCommand=.* root@server)$/m))[1]!;
    await out.waitFor(/WAITING FOR SSH/);
    viaBackdoor = await execa("bash", ["-c", `${line} -o BatchMode=yes -o LogLevel=ERROR 'touch /root/ssh-was-here; hostname; cat /proc/1/comm'`], { reject: false, timeout: 60_000, stdin: "ignore" });
    runSoFar = out.text();
  });
  assert.equal(viaBackdoor?.exitCode, 0, `ssh: ${String(viaBackdoor?.stderr) || "(no stderr)"}\nthe run so far:\n${runSoFar}`);
  assert.equal(viaBackdoor?.stdout, "server\nsystemd", "the host's ssh through the backdoor socket reached the guest's sshd as root");
  assert.equal(later.exitCode, 0, later.all);
  assert.doesNotMatch(later.all, /snapshot saved/);
  assert.equal((later.all.match(/starting qemu \([^)]*from snapshot/g) ?? []).length, 2, `both machines of the later run restored:\n${later.all}`);
  assert.equal(later.facts.page, "hello from debian");
  assert.equal(later.facts.pid1, "systemd");
  assert.deepEqual(await qemuProcesses(), [], "no qemu process left behind");
});

test("bring your own guest: the image as a NixOS-style start script and as a disk booted by extlinux", async () => {
  const script = /^script: +(\S+)$/m.exec(built.stdout)?.[1];
  const disk = /^disk: +(\S+)$/m.exec(built.stdout)?.[1];
  assert.ok(script?.endsWith("/run-debian-vm") && existsSync(script), built.all);
  assert.ok(disk && existsSync(disk), built.all);
  const r = await haltpoint(["run", "test/fixtures/debian-byo", "--log-dir", join(dir, "byo-logs")], { env: { HP_DEB_START_SCRIPT: script!, HP_DEB_DISK: disk! }, timeout: 600_000 });
  assert.equal(r.exitCode, 0, r.all);
  const f = JSON.parse(/FACT (\{.*\})/.exec(r.all)?.[1] ?? "{}");
  for (const m of ["scripted", "disked"]) {
    assert.equal(f[m]?.pid1, "systemd", `${m}: ${r.all}`);
    assert.equal(f[m]?.shellOn, "/dev/hvc0", `${m}: the backdoor started on the virtconsole haltpoint's QEMU_OPTS / argv gave it`);
    assert.equal(f[m]?.lighttpd, "active");
  }
  assert.match(f.disked.cmdline, /^BOOT_IMAGE=\/boot\/vmlinuz-\S+ .*root=\/dev\/vda/, "extlinux loaded the kernel from the disk's own /boot");
  assert.equal(f.disked.bootloader, "extlinux");
  assert.doesNotMatch(f.scripted.cmdline, /BOOT_IMAGE/, "the start script boots the kernel directly");
  assert.deepEqual(await qemuProcesses(), [], "no qemu process left behind");
});
