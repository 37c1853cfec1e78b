// The bundle manifest's checks and the saved argv's placeholders (no QEMU: test/bundle.test.ts
// saves and revives real guests).
import { test } from "node:test";
import assert from "node:assert/strict";
import { BUNDLE_FORMAT, BUNDLE_VERSION, validateManifest } from "../../hooks/bundles/bundle-format.ts";
import { argvFromTemplate, argvTemplate } from "../../vm/qemu/saved-machine.ts";

const sha = "a".repeat(64);
const manifest = (machine: Record<string, unknown>) => ({
  format: BUNDLE_FORMAT,
  version: BUNDLE_VERSION,
  savedAt: "2026-12-03T00:00:00.000Z",
  haltpoint: "0.1.0",
  qemu: "QEMU emulator version 7.2.22",
  test: { name: "t", file: "/x/t.vmtest.ts", run: 1, key: "t#1" },
  kind: "failure",
  sshBackdoor: false,
  machines: [{ name: "vm", backend: "qemu", options: {}, argv: ["-m", "256"], state: { path: "vm/state.zst", bytes: 10, sha256: sha }, ...machine }],
});

test("a manifest is checked field by field; paths must stay inside the bundle", () => {
  assert.equal(validateManifest(manifest({})).machines[0]!.name, "vm");
  assert.throws(() => validateManifest({ format: "other" }), /not a haltpoint breakpoint bundle/);
  assert.throws(() => validateManifest({ ...manifest({}), version: 99 }), /bundle format version 99, this haltpoint reads version 1/);
  assert.throws(() => validateManifest(manifest({ state: { path: "../../etc/shadow", bytes: 1, sha256: sha } })), /machines\[0\]\.state: not a path inside the bundle/);
  assert.throws(() => validateManifest(manifest({ state: { path: "/etc/shadow", bytes: 1, sha256: sha } })), /not a path inside the bundle/);
  assert.throws(() => validateManifest(manifest({ state: { path: "vm/state.zst", bytes: 1, sha256: "xyz" } })), /needs "bytes" and a sha256/);
  assert.throws(() => validateManifest(manifest({ backend: "vbox" })), /machines\[0\]\.backend: "vbox" is not a backend/);
});

test("a saved argv names the run's paths by placeholders and comes back in another state dir", () => {
  const argv = ["-kernel", "/cache/img/vmlinuz", "-initrd", "/cache/img/initrd", "-chardev", "socket,id=qmp,path=/var/tmp/hp-1111111111/1/vm/qmp.sock,server=on", "-netdev", "stream,id=vnet0,addr.path=/var/tmp/hp-1111111111/1/vnet-1.sock", "-incoming", "exec:zstd -dc '/cache/snap.zst'", "-m", "256"];
  const t = argvTemplate(argv, { stateRoot: "/var/tmp/hp-1111111111/1", kernel: "/cache/img/vmlinuz", initrd: "/cache/img/initrd" });
  assert.ok(!t.some((a) => a.includes("hp-1111111111") || a.includes("/cache/")), t.join(" "));
  assert.ok(!t.includes("-incoming"), "a snapshot boot's -incoming is not part of the machine");
  assert.deepEqual(argvFromTemplate(t, { stateRoot: "/var/tmp/hp-2222222222/1", kernel: "/b/boot/k", initrd: "/b/boot/i" }), [
    "-kernel", "/b/boot/k", "-initrd", "/b/boot/i",
    "-chardev", "socket,id=qmp,path=/var/tmp/hp-2222222222/1/vm/qmp.sock,server=on",
    "-netdev", "stream,id=vnet0,addr.path=/var/tmp/hp-2222222222/1/vnet-1.sock",
    "-m", "256",
  ]);
  assert.throws(() => argvFromTemplate(t, { stateRoot: "/s" }), /needs its kernel, and the bundle has none/);
});
