// The bundle manifest's checks (no QEMU: test/bundle.test.ts saves and revives real guests,
// test/bundle-untrusted.test.ts revives crafted ones). A bundle is untrusted input: every field
// is checked, and one this haltpoint cannot map back to its argv builder's parameters is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { execaSync } from "execa";
import { checkSignature, ownKeyFile, readKey, signBundle } from "../../hooks/bundles/bundle-signature.ts";
import { join } from "node:path";
import { BUNDLE_FORMAT, BUNDLE_VERSION, fileInBundle, readManifest, validateManifest } from "../../hooks/bundles/bundle-format.ts";
import { buildQemuArgv } from "../../vm/qemu/qemu-argv.ts";
import { REVIVE_SANDBOX, revivedArgvOptions, savedParams } from "../../vm/qemu/saved-machine.ts";
import { revivePlan } from "../../vm/qemu/revive-plan.ts";
import { savedShape, unsaveableBecause } from "../../vm/qemu/bundle-shape.ts";
import { qcow2Refusal } from "../../vm/qemu/qcow2-header.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

const sha = "a".repeat(64);
const manifest = (machine: Record<string, unknown>, top: Record<string, unknown> = {}) => ({
  format: BUNDLE_FORMAT,
  version: BUNDLE_VERSION,
  savedAt: "2026-12-03T00:00:00.000Z",
  origin: { host: "ci-runner-7", user: "ci" },
  haltpoint: "0.1.0",
  qemu: "QEMU emulator version 7.2.22",
  test: { name: "t", file: "/x/t.vmtest.ts", run: 1, key: "t#1" },
  kind: "failure",
  sshBackdoor: false,
  machines: [
    {
      name: "vm",
      backend: "qemu",
      memoryMiB: 256,
      cores: 1,
      vlans: [],
      shellPort: "named",
      identityDevices: true,
      allowReboot: false,
      kernel: { path: "boot/k.kernel", bytes: 10, sha256: sha },
      state: { path: "vm/state.zst", bytes: 10, sha256: sha },
      ...machine,
    },
  ],
  ...top,
});

test("a manifest is checked field by field: no argv, no unknown field, paths inside the bundle, bounded numbers", () => {
  assert.equal(validateManifest(manifest({})).machines[0]!.name, "vm");
  assert.throws(() => validateManifest({ format: "other" }), /not a haltpoint breakpoint bundle/);
  assert.throws(() => validateManifest({ ...manifest({}), version: 1 }), /^BundleError: bundle format version 1, this haltpoint reads version 3 only: save it again with this haltpoint$/);
  const refused: Array<[Record<string, unknown>, RegExp]> = [
    [{ argv: ["-m", "256", "-pidfile", "/tmp/x"] }, /^BundleError: machines\[0\]\.argv: not a field of a version 3 bundle \(revive takes no QEMU options from a bundle\)$/],
    [{ options: { qemuArgs: ["-netdev", "user,id=x,guestfwd=tcp:10.0.2.100:1-cmd:touch /tmp/x"] } }, /^BundleError: machines\[0\]\.options: not a field/],
    [{ state: { path: "../../etc/shadow", bytes: 1, sha256: sha } }, /machines\[0\]\.state: not a path inside the bundle/],
    [{ state: { path: "/etc/shadow", bytes: 1, sha256: sha } }, /not a path inside the bundle/],
    [{ state: { path: "vm/./state.zst", bytes: 1, sha256: sha } }, /not a path inside the bundle/],
    [{ state: { path: "vm/state.zst", bytes: 1, sha256: "xyz" } }, /needs "bytes" and a sha256/],
    [{ state: { path: "vm/state.zst", bytes: -1, sha256: sha } }, /machines\[0\]\.state\.bytes: must be an integer/],
    [{ backend: "vbox" }, /machines\[0\]\.backend: "vbox" is not a backend/],
    [{ name: "../x" }, /machines\[0\]\.name: must be a machine name/],
    [{ memoryMiB: 10_000_000 }, /machines\[0\]\.memoryMiB: must be an integer from 16 to 65536/],
    [{ cores: 0 }, /machines\[0\]\.cores: must be an integer/],
    [{ vlans: [1, 1] }, /machines\[0\]\.vlans: must be distinct/],
    [{ shellPort: "serial" }, /machines\[0\]\.shellPort/],
    [{ append: "console=ttyS0\u001b]0;x\u0007" }, /machines\[0\]\.append: must be one line of text/],
    [{ kernel: undefined }, /machines\[0\]: needs a kernel or a disk$/],
    [{ disk: { writes: { path: "vm/disk.qcow2", bytes: 1, sha256: sha }, image: "images/none.qcow2" } }, /machines\[0\]\.disk\.image: images\/none\.qcow2 is not one of the bundle's images$/],
    [{ disk: { writes: { path: "vm/disk.qcow2", bytes: 1, sha256: sha }, image: "images/i.qcow2", backing: "/etc/shadow" } }, /machines\[0\]\.disk\.backing: not a field/],
  ];
  for (const [m, why] of refused) assert.throws(() => validateManifest(manifest(m)), why, JSON.stringify(m));
  assert.throws(() => validateManifest(manifest({}, { qemuArgs: ["-S"] })), /^BundleError: qemuArgs: not a field/);
  assert.throws(() => validateManifest(manifest({}, { origin: { host: "a\nb", user: "u" } })), /origin\.host: must be one line/);
});

test("revive builds the argv with the same builder from the saved parameters: what was saved comes back, and nothing else", () => {
  const base = { name: "vm", memoryMiB: 1, cores: 1, accel: "tcg" as const, qmpSocket: "/s/vm/qmp.sock", shellSocket: "/s/vm/shell.sock", killSocket: "/s/vm/kill.sock", serial: { type: "socket" as const, path: "/s/vm/serial.sock" } };
  const started = { ...base, memoryMiB: 256, cores: 2, shellPort: "named" as const, kernel: "/cache/k", initrd: "/cache/i", append: "console=ttyS0 hp.x=1", extraArgs: ["-device", "vmgenid,guid=auto", "-device", "virtio-rng-pci"] };
  const p = savedParams(started, []);
  assert.ok(!("unsaveable" in p));
  const again = buildQemuArgv(revivedArgvOptions(base, { params: p, kernel: "/cache/k", initrd: "/cache/i" }));
  assert.deepEqual(again, buildQemuArgv(started));
  assert.deepEqual(savedParams({ ...started, extraArgs: ["-pidfile", "/tmp/x"] }, []), { unsaveable: "it has extra QEMU arguments (qemuArgs), which a bundle never carries" });
});

test("revive's plan: the saved parameters' argv under the seccomp sandbox, listening for its state; refused when this run's NICs differ from the saved ones", () => {
  const base = { name: "vm", memoryMiB: 1, cores: 1, accel: "tcg" as const, qmpSocket: "/s/vm/qmp.sock", shellSocket: "/s/vm/shell.sock", killSocket: "/s/vm/kill.sock", serial: { type: "socket" as const, path: "/s/vm/serial.sock" } };
  const started = { ...base, memoryMiB: 256, shellPort: "named" as const, kernel: "/cache/k", append: "console=ttyS0" };
  const params = savedParams(started, []);
  assert.ok(!("unsaveable" in params));
  const revived = { params, kernel: "/cache/k", state: "/b/vm/state.zst", maxStreamBytes: 1 << 30 };
  const plan = revivePlan({ revived, base, hubs: [undefined], dir: "/s/vm", runAs: undefined });
  assert.deepEqual(plan.args, [...buildQemuArgv(started), ...REVIVE_SANDBOX, "-incoming", "unix:/s/vm/incoming.sock"]);
  assert.throws(() => revivePlan({ revived, base, hubs: ["/s/hub-1.sock"], dir: "/s/vm", runAs: undefined }), /saved with 0 NIC\(s\) on the run network and this run has 1 for it/);
});

test("a machine's bundle shape: why it cannot be saved, the first reason first; its parameters and boot files when it can", () => {
  const started = { name: "vm", memoryMiB: 256, cores: 1, accel: "tcg" as const, qmpSocket: "/q", shellSocket: "/s", killSocket: "/k", serial: { type: "socket" as const, path: "/c" }, shellPort: "named" as const, kernel: "/cache/k", initrd: "/cache/i" };
  const shape = () => savedShape(started, () => []);
  const m = { startedWith: started, startScript: false, revivedWithDisk: false, hasVsock: false, shape };
  assert.equal(unsaveableBecause(m), undefined);
  assert.equal(unsaveableBecause({ ...m, startedWith: undefined, startScript: true }), "it was started by a start script");
  assert.equal(unsaveableBecause({ ...m, startedWith: undefined }), "it is not running");
  assert.equal(unsaveableBecause({ ...m, revivedWithDisk: true, hasVsock: true }), "it was revived with a disk, which a bundle does not carry again yet");
  assert.equal(unsaveableBecause({ ...m, hasVsock: true }), "it has a vhost-device-vsock daemon, whose state is outside QEMU");
  const s = shape();
  assert.ok("params" in s);
  assert.equal(s.kernel, "/cache/k");
  assert.equal(s.initrd, "/cache/i");
  assert.deepEqual(savedShape(undefined, () => []), { unsaveable: "it is not running" });
});

test("a bundle's files are its own: a symbolic link anywhere on the path, a directory or a missing file is refused", () => {
  const dir = tempDir("hp-bundle-files-");
  try {
    mkdirSync(join(dir, "vm"));
    writeFileSync(join(dir, "vm", "state.zst"), "12345");
    assert.equal(fileInBundle(dir, "vm/state.zst", "state").bytes, 5);
    symlinkSync("/etc/passwd", join(dir, "vm", "link"));
    assert.throws(() => fileInBundle(dir, "vm/link", "machine vm's saved state"), /^BundleError: machine vm's saved state \(vm\/link\) is a symbolic link: a bundle's files must be its own$/);
    symlinkSync("/etc", join(dir, "etc"));
    assert.throws(() => fileInBundle(dir, "etc/passwd", "x"), /\(etc\/passwd\) is a symbolic link/);
    assert.throws(() => fileInBundle(dir, "vm", "x"), /is not a regular file/);
    assert.throws(() => fileInBundle(dir, "vm/none", "x"), /\(vm\/none\) is missing/);
    symlinkSync("/etc/passwd", join(dir, "bundle.json"));
    assert.throws(() => readManifest(dir), /^BundleError: bundle\.json: not a regular file$/);
    rmSync(join(dir, "bundle.json"));
    writeFileSync(join(dir, "bundle.json"), " ".repeat(2 << 20));
    assert.throws(() => readManifest(dir), /^BundleError: bundle\.json: 2097152 bytes, a manifest is at most 1048576$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a bundle's signature: the user's own key and --trust-key keys are trusted; a changed, unsigned or stranger's bundle is refused unless --allow-unsigned", () => {
  const dir = tempDir("hp-bundle-sig-");
  const saved = process.env.XDG_CONFIG_HOME;
  try {
    process.env.XDG_CONFIG_HOME = join(dir, "config");
    const bundle = join(dir, "b");
    mkdirSync(bundle);
    writeFileSync(join(bundle, "bundle.json"), JSON.stringify(manifest({})));
    const raw = () => readFileSync(join(bundle, "bundle.json"));
    // Unsigned first: the user has no key yet.
    assert.throws(() => checkSignature(bundle, raw(), {}), /^BundleError: it is not signed \(no bundle\.sig\): give the signer's public key with --trust-key FILE, or revive it anyway with --allow-unsigned$/);
    assert.equal(checkSignature(bundle, raw(), { allowUnsigned: true }), "it is not signed (no bundle.sig): revived anyway (--allow-unsigned)");
    const own = signBundle(bundle); // makes the user's own key
    assert.match(own, /^ed25519:[0-9a-f]{16}$/);
    assert.equal((statSync(ownKeyFile()).mode & 0o777).toString(8), "600");
    assert.equal(checkSignature(bundle, raw(), {}), `signed by ${own} (your own key)`);
    // Another signer (a CI job's key): trusted only when its public key is given.
    execaSync("openssl", ["genpkey", "-algorithm", "ed25519", "-out", join(dir, "ci.pem")]);
    execaSync("openssl", ["pkey", "-in", join(dir, "ci.pem"), "-pubout", "-out", join(dir, "ci.pub")]);
    const ci = signBundle(bundle, join(dir, "ci.pem"));
    assert.throws(() => checkSignature(bundle, raw(), {}), new RegExp(`^BundleError: it is signed by ${ci}, a key you do not trust: give the signer's public key`));
    assert.equal(checkSignature(bundle, raw(), { trustKeys: [join(dir, "ci.pub")] }), `signed by ${ci} (${join(dir, "ci.pub")})`);
    // One byte of the manifest changed after signing.
    assert.throws(() => checkSignature(bundle, Buffer.from(raw().toString().replace('"t#1"', '"t#2"')), { trustKeys: [join(dir, "ci.pub")] }), /its signature does not match its bundle\.json \(changed after it was signed\)/);
    assert.throws(() => readKey(join(dir, "b", "bundle.json"), "private"), /bundle\.json: not an ed25519 private key in PEM .*; make one with: openssl genpkey -algorithm ed25519 -out key\.pem$/);
  } finally {
    if (saved === undefined) delete process.env.XDG_CONFIG_HOME;
    else process.env.XDG_CONFIG_HOME = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a disk from a bundle names exactly the bundle's image as its backing file, and no other file: its qcow2 header is checked", () => {
  const dir = tempDir("hp-bundle-qcow2-");
  try {
    const img = (name: string, ...args: string[]) => execaSync("qemu-img", ["create", "-q", "-f", "qcow2", ...args, join(dir, name), "64M"]);
    mkdirSync(join(dir, "images"));
    mkdirSync(join(dir, "vm"));
    img("images/base.qcow2", "-o", "compression_type=zstd");
    img("vm/disk.qcow2", "-u", "-b", "../images/base.qcow2", "-F", "qcow2");
    assert.equal(qcow2Refusal(join(dir, "images/base.qcow2"), undefined), undefined);
    assert.equal(qcow2Refusal(join(dir, "vm/disk.qcow2"), "../images/base.qcow2"), undefined);
    assert.equal(qcow2Refusal(join(dir, "vm/disk.qcow2"), undefined), 'it names a backing file ("../images/base.qcow2"), the bundle\'s base image has none');
    img("vm/elsewhere.qcow2", "-u", "-b", "/etc/shadow", "-F", "raw");
    assert.equal(qcow2Refusal(join(dir, "vm/elsewhere.qcow2"), "../images/base.qcow2"), 'its backing file is "/etc/shadow", not the bundle\'s "../images/base.qcow2"');
    img("vm/json.qcow2", "-u", "-b", "../images/base.qcow2", "-F", "raw");
    assert.equal(qcow2Refusal(join(dir, "vm/json.qcow2"), "../images/base.qcow2"), 'its backing file format is "raw", not qcow2');
    img("vm/data-file.qcow2", "-o", `data_file=${join(dir, "outside.raw")}`);
    assert.equal(qcow2Refusal(join(dir, "vm/data-file.qcow2"), undefined), "incompatible qcow2 features 0x4 (an external data file, a dirty or corrupt image)");
    writeFileSync(join(dir, "vm/raw"), Buffer.alloc(4096));
    assert.equal(qcow2Refusal(join(dir, "vm/raw"), undefined), "not a qcow2 file");
    img("vm/v2.qcow2", "-o", "compat=0.10");
    assert.equal(qcow2Refusal(join(dir, "vm/v2.qcow2"), undefined), "qcow2 version 2, haltpoint writes version 3 only");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a revived disk is the bundle's writes over the bundle's image, both named on the command line, through a throw-away overlay", () => {
  const base = { name: "vm", memoryMiB: 1, cores: 1, accel: "tcg" as const, qmpSocket: "/s/q", shellSocket: "/s/s", killSocket: "/s/k", serial: { type: "none" as const } };
  const p = savedParams({ ...base, memoryMiB: 512, kernel: "/k", diskImage: { path: "/cache/rootfs.img", format: "raw", snapshot: true } }, []);
  assert.ok(!("unsaveable" in p));
  const argv = buildQemuArgv(revivedArgvOptions(base, { params: p, kernel: "/b/boot/k", disk: { overlay: "/b/vm/disk.qcow2", base: "/b/images/i,x.qcow2" } }));
  assert.equal(argv[argv.indexOf("-drive") + 1], "file=/b/vm/disk.qcow2,if=virtio,format=qcow2,snapshot=on,file.driver=file,backing.driver=qcow2,backing.file.driver=file,backing.file.filename=/b/images/i,,x.qcow2");
});
