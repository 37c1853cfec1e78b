// "Bring your own guest" from a Debian image: the same guest as node option `image` gives,
// handed over the way other guests come to haltpoint —
// - a NixOS-style start script, `run-<name>-vm`, that starts QEMU with the image's kernel,
//   initrd and root disk and appends "$QEMU_OPTS" and its arguments (node option `startScript`);
// - a raw disk image that boots through its own bootloader: extlinux installed in the ext4 root
//   file system itself (no partition table), loading the kernel and initrd from its /boot (node
//   option `diskImage`).
// Either way haltpoint's QEMU options give the guest a virtconsole (hvc0), and the image's
// backdoor unit starts on it (vm/image/debian-units.ts). Such a guest gets no `hp.*` kernel
// parameters from haltpoint: its hostname is "debian" and eth1 is left unconfigured.

import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { ImageBuildError } from "./apt-packages.ts";
import type { DebianImage } from "./debian-image.ts";
import { DEBIAN_ROOT_APPEND } from "./debian-units.ts";
import { DEFAULT_APPEND } from "./guest-params.ts";
import { findOnPath } from "../find-on-path.ts";

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Write `<dir>/run-<name>-vm`; returns its path. */
export async function writeStartScript(image: DebianImage, dir: string, name = "debian"): Promise<string> {
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new ImageBuildError(`haltpoint image: --name ${JSON.stringify(name)}: letters, digits, '-' and '_' only`);
  await mkdir(dir, { recursive: true });
  const file = join(dir, `run-${name}-vm`);
  const script = `#!/bin/sh
# A NixOS-style start script for haltpoint's Debian image ${image.key} (packages: ${image.packages.join(" ") || "base only"}).
# QEMU with the image's kernel, initrd and root disk (writes go to a throw-away overlay);
# "$QEMU_OPTS" and the script's arguments come last, as in NixOS's run-<name>-vm.
# QEMU_ACCEL (default tcg) and QEMU_MEMORY_MIB (default 512) change the machine.
exec qemu-system-x86_64 -name ${shq(name)} -nodefaults -no-user-config -machine pc \\
  -accel "\${QEMU_ACCEL:-tcg}" -m "\${QEMU_MEMORY_MIB:-512}" -display none -vga std -no-reboot \\
  -kernel ${shq(image.kernel)} -initrd ${shq(image.initrd)} \\
  -append ${shq(`${DEFAULT_APPEND} ${DEBIAN_ROOT_APPEND}`)} \\
  -drive ${shq(`file=${image.rootfs.replaceAll(",", ",,")},if=virtio,format=raw,snapshot=on`)} \\
  -netdev user,id=net0 -device virtio-net-pci,netdev=net0 -device virtio-rng-pci \\
  $QEMU_OPTS "$@"
`;
  await writeFile(file, script);
  await chmod(file, 0o755);
  return file;
}

async function run(file: string, args: string[], what: string): Promise<void> {
  const r = await execa(file, args, { reject: false });
  if (r.exitCode !== 0) throw new ImageBuildError(`haltpoint image: ${what} failed: ${(r.stderr || r.stdout || `${file} did not run`).trim().split("\n").at(-1)}`);
}

/**
 * Write `file`: a raw disk that boots through extlinux. The image's root is copied into a new
 * ext4 file system without the 64bit and metadata_csum features (extlinux 6.04 reads neither),
 * then extlinux is installed into it. Needs root (a read-only loop mount of the image, a loop
 * mount of the disk: extlinux installs only into a mounted file system) and extlinux.
 */
export async function writeBootableDisk(image: DebianImage, file: string, log: (line: string) => void = () => {}): Promise<void> {
  if (process.getuid?.() !== 0) throw new ImageBuildError("haltpoint image: --disk needs root (extlinux installs only into a mounted file system)");
  if (!findOnPath("extlinux")) throw new ImageBuildError("haltpoint image: --disk needs extlinux: apt-get install extlinux");
  const scratch = await mkdtemp(join(image.dir, "..", ".build-disk-"));
  const from = join(scratch, "from");
  const to = join(scratch, "to");
  await mkdir(from);
  await mkdir(to);
  let mounted: string[] = [];
  const umount = async (dir: string) => {
    await run("umount", [dir], `unmounting ${dir}`);
    mounted = mounted.filter((d) => d !== dir);
  };
  try {
    await run("mount", ["-o", "loop,ro", image.rootfs, from], "mounting the image's root file system (loop, read-only)");
    mounted.push(from);
    const mib = Math.ceil((await execa("du", ["-sbx", from])).stdout.split(/\s/).map(Number)[0]! * 1.25 / 2 ** 20) + 512;
    log(`making ${file} (${mib} MiB ext4, booted by extlinux)`);
    await rm(file, { force: true });
    await run("mke2fs", ["-q", "-t", "ext4", "-O", "^64bit,^metadata_csum", "-L", "hproot", "-d", from, file, `${mib}M`], "making the disk's file system");
    await umount(from);
    await run("mount", ["-o", "loop", file, to], "mounting the disk (loop)");
    mounted.push(to);
    const boot = await readdir(join(to, "boot"));
    const vmlinuz = boot.find((f) => f.startsWith("vmlinuz-"));
    const initrd = boot.find((f) => f.startsWith("initrd.img-"));
    if (!vmlinuz || !initrd) throw new ImageBuildError("haltpoint image: the image has no kernel and initrd in /boot");
    await mkdir(join(to, "boot/extlinux"), { recursive: true });
    await writeFile(
      join(to, "boot/extlinux/extlinux.conf"),
      `DEFAULT debian\nTIMEOUT 0\nPROMPT 0\nLABEL debian\n  LINUX /boot/${vmlinuz}\n  INITRD /boot/${initrd}\n  APPEND ${DEFAULT_APPEND} ${DEBIAN_ROOT_APPEND}\n`,
    );
    await run("extlinux", ["--install", join(to, "boot/extlinux")], "installing extlinux");
    await umount(to);
    log(`${file}: boots through extlinux (kernel ${vmlinuz.slice("vmlinuz-".length)})`);
  } finally {
    for (const d of [...mounted].reverse()) await execa("umount", [d], { reject: false });
    await rm(scratch, { recursive: true, force: true });
  }
}
