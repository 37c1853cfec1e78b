// The qemu-system-x86_64 argv builder (pure): what each option turns into.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildQemuArgv, qemuOptValue, type QemuArgvOptions } from "../vm/qemu/qemu-argv.ts";

const base: QemuArgvOptions = {
  kernel: "/img/vmlinuz",
  initrd: "/img/initrd.img",
  append: "console=ttyS0 panic=-1 quiet",
  memoryMiB: 512,
  cores: 2,
  accel: "tcg",
  qmpSocket: "/run/m/qmp.sock",
  shellSocket: "/run/m/shell.sock",
  serial: { type: "file", path: "/run/m/serial.log" },
};

/** The value following each occurrence of `flag`. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));
}

describe("buildQemuArgv", () => {
  it("builds a headless TCG machine with QMP, serial and the backdoor virtconsole", () => {
    const argv = buildQemuArgv(base);
    assert.deepEqual(argv.slice(0, 14), [
      "-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "tcg,thread=multi", "-m", "512", "-smp", "2",
      "-display", "none", "-vga", "std",
    ]);
    assert.ok(argv.includes("-no-reboot"));
    assert.ok(!argv.includes("-nographic") && !argv.includes("-cpu"));
    assert.deepEqual(values(argv, "-kernel"), ["/img/vmlinuz"]);
    assert.deepEqual(values(argv, "-initrd"), ["/img/initrd.img"]);
    assert.deepEqual(values(argv, "-append"), ["console=ttyS0 panic=-1 quiet"]);
    assert.deepEqual(values(argv, "-chardev"), [
      "socket,id=qmp,path=/run/m/qmp.sock,server=on,wait=off",
      "file,id=serial0,path=/run/m/serial.log",
      // the host listens; QEMU connects as a client (no server=on)
      "socket,id=shell,path=/run/m/shell.sock",
    ]);
    assert.deepEqual(values(argv, "-mon"), ["chardev=qmp,mode=control"]);
    assert.deepEqual(values(argv, "-serial"), ["chardev:serial0"]);
    assert.deepEqual(values(argv, "-device"), ["virtio-serial", "virtconsole,chardev=shell", "virtio-net-pci,netdev=net0,id=nic0"]);
    assert.deepEqual(values(argv, "-netdev"), ["user,id=net0"]);
  });

  it("a kill socket adds a named virtio-serial port on the same bus (no new PCI device)", () => {
    const argv = buildQemuArgv({ ...base, killSocket: "/run/m/kill.sock" });
    assert.ok(values(argv, "-chardev").includes("socket,id=hpkill,path=/run/m/kill.sock,server=on,wait=off"), "QEMU listens; haltpoint connects");
    assert.deepEqual(values(argv, "-device").slice(0, 3), ["virtio-serial", "virtconsole,chardev=shell", "virtserialport,chardev=hpkill,name=org.haltpoint.kill"]);
    assert.throws(() => buildQemuArgv({ ...base, killSocket: "/" + "k".repeat(107) }), /kill socket path is 108 bytes/);
  });

  it("uses KVM with the host CPU, and honours an explicit CPU model", () => {
    const kvm = buildQemuArgv({ ...base, accel: "kvm" });
    assert.deepEqual(values(kvm, "-accel"), ["kvm"]);
    assert.deepEqual(values(kvm, "-cpu"), ["host"]);
    assert.deepEqual(values(buildQemuArgv({ ...base, cpu: "max" }), "-cpu"), ["max"]);
  });

  it("serial on a UNIX socket, optionally teed to a log file, or none at all", () => {
    const sock = buildQemuArgv({ ...base, serial: { type: "socket", path: "/s/serial.sock", logFile: "/s/serial.log" } });
    assert.ok(values(sock, "-chardev").includes("socket,id=serial0,path=/s/serial.sock,logfile=/s/serial.log"));
    const none = buildQemuArgv({ ...base, serial: { type: "none" } });
    assert.deepEqual(values(none, "-serial"), []);
  });

  it("forwards loopback ports over user networking", () => {
    const argv = buildQemuArgv({ ...base, userNetForwards: [{ hostPort: 2222, guestPort: 22 }, { hostPort: 8080, guestPort: 80 }] });
    assert.deepEqual(values(argv, "-netdev"), ["user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80"]);
    assert.throws(() => buildQemuArgv({ ...base, userNetForwards: [{ hostPort: 0, guestPort: 22 }] }), /invalid host port 0/);
  });

  it("adds a second NIC on a stream socket to the host's hub, after the user NIC", () => {
    const argv = buildQemuArgv({ ...base, vnet: { socketPath: "/run/hub.sock", mac: "52:54:00:12:00:05" } });
    assert.deepEqual(values(argv, "-netdev"), ["user,id=net0", "stream,id=vnet0,server=off,addr.type=unix,addr.path=/run/hub.sock"]);
    assert.deepEqual(values(argv, "-device").slice(-2), ["virtio-net-pci,netdev=net0,id=nic0", "virtio-net-pci,netdev=vnet0,id=vnic0,mac=52:54:00:12:00:05"]);
    assert.throws(() => buildQemuArgv({ ...base, vnet: { socketPath: "/x", mac: "nope" } }), /invalid MAC/);
  });

  it("gives a machine on more vlans one NIC per vlan, in order after the first, and -no-reboot unless allowReboot", () => {
    const argv = buildQemuArgv({ ...base, vnet: { socketPath: "/run/v1.sock", mac: "52:54:00:12:01:02" }, moreVnets: [{ socketPath: "/run/v2.sock", mac: "52:54:00:12:02:02" }] });
    assert.deepEqual(values(argv, "-netdev").slice(1), ["stream,id=vnet0,server=off,addr.type=unix,addr.path=/run/v1.sock", "stream,id=vnet1,server=off,addr.type=unix,addr.path=/run/v2.sock"]);
    assert.deepEqual(values(argv, "-device").slice(-2), ["virtio-net-pci,netdev=vnet0,id=vnic0,mac=52:54:00:12:01:02", "virtio-net-pci,netdev=vnet1,id=vnic1,mac=52:54:00:12:02:02"]);
    assert.ok(argv.includes("-no-reboot"));
    assert.ok(!buildQemuArgv({ ...base, allowReboot: true }).includes("-no-reboot"));
  });

  it("boots a disk image (snapshot by default) and escapes commas in paths", () => {
    const { kernel: _k, initrd: _i, append: _a, ...noKernel } = base;
    const argv = buildQemuArgv({ ...noKernel, diskImage: "/vm/a,b.qcow2" });
    assert.deepEqual(values(argv, "-drive"), ["file=/vm/a,,b.qcow2,if=virtio,format=qcow2,snapshot=on"]);
    assert.deepEqual(values(argv, "-kernel"), []);
    const raw = buildQemuArgv({ ...noKernel, diskImage: { path: "/vm/disk.img", snapshot: false } });
    assert.deepEqual(values(raw, "-drive"), ["file=/vm/disk.img,if=virtio,format=raw"]);
    assert.equal(qemuOptValue("a,b,,c"), "a,,b,,,,c");
  });

  it("puts extra arguments last and rejects impossible machines", () => {
    const argv = buildQemuArgv({ ...base, name: "login#3 server", extraArgs: ["-device", "virtio-rng-pci"] });
    assert.deepEqual(argv.slice(-2), ["-device", "virtio-rng-pci"]);
    assert.deepEqual(values(argv, "-name"), ["login#3 server"]);
    const { kernel: _k, initrd: _i, append: _a, ...noKernel } = base;
    assert.throws(() => buildQemuArgv(noKernel), /needs a kernel or a disk image/);
    assert.throws(() => buildQemuArgv({ ...base, memoryMiB: 0 }), /invalid memory size/);
    assert.throws(() => buildQemuArgv({ ...base, cores: 1.5 }), /invalid core count/);
    assert.throws(() => buildQemuArgv({ ...base, shellSocket: "/" + "x".repeat(107) }), /shell socket path is 108 bytes, over the 107-byte limit/);
  });
});
