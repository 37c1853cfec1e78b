// Which kernel modules go into the guest image, in the order /init loads them, and
// how they are taken out of the extracted kernel package.

import { copyFile, readdir, readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { gunzipSync } from "node:zlib";
import { execa } from "execa";

/**
 * Load order (dependencies first); busybox insmod does not resolve dependencies.
 * Debian's kernels build all of these as modules; a kernel that builds one in
 * (or lacks it) simply has no file for it, and /init skips it.
 */
export const GUEST_MODULES: readonly string[] = [
  // virtio transport, the backdoor console (hvc0) and the NICs
  "virtio_ring",
  "virtio",
  "virtio_pci_legacy_dev",
  "virtio_pci_modern_dev",
  "virtio_pci",
  "virtio_console",
  // virtio-rng: host entropy, so the kernel's CRNG is ready within the boot (TCG has no
  // RDRAND) and reseeds when a restored guest's VM generation id changes
  "rng_core",
  "virtio_rng",
  "failover",
  "net_failover",
  "virtio_net",
  // vsock (for vhost-vsock where the host has it)
  "vsock",
  "vmw_vsock_virtio_transport_common",
  "vmw_vsock_virtio_transport",
  // a scratch disk attached with -drive if=virtio shows up as /dev/vda
  "virtio_blk",
  // ACPI power button as an input device, so QMP system_powerdown reaches busybox acpid
  "button",
  "evdev",
];

const MODULE_FILE = /^(.+)\.ko(\.xz|\.zst|\.gz)?$/;

/** Module files by normalised name ("virtio-rng" and "virtio_rng" are the same module). */
async function indexModules(kernelDir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  const entries = await readdir(kernelDir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const m = MODULE_FILE.exec(e.name);
    if (m) index.set(m[1]!.replaceAll("-", "_"), join(e.parentPath, e.name));
  }
  return index;
}

async function builtinModules(modulesDir: string): Promise<Set<string>> {
  const text = await readFile(join(modulesDir, "modules.builtin"), "utf8").catch(() => "");
  const names = text.split("\n").filter(Boolean);
  return new Set(names.map((p) => basename(p).replace(/\.ko$/, "").replaceAll("-", "_")));
}

/** Copy one module uncompressed: busybox insmod reads plain ELF only. */
async function copyUncompressed(src: string, dst: string): Promise<void> {
  if (src.endsWith(".ko")) return copyFile(src, dst);
  if (src.endsWith(".gz")) return writeFile(dst, gunzipSync(await readFile(src)));
  const tool = src.endsWith(".xz") ? "xz" : "zstd";
  try {
    const { stdout } = await execa(tool, ["-dc", src], { encoding: "buffer", stripFinalNewline: false });
    await writeFile(dst, stdout);
  } catch (e) {
    const why = (e as { code?: string }).code === "ENOENT" ? `${tool} is not installed (apt-get install ${tool === "xz" ? "xz-utils" : "zstd"})` : String(e);
    throw new Error(`haltpoint image: cannot decompress ${basename(src)}: ${why}`);
  }
}

/**
 * Copy the guest's modules from `modulesDir` (lib/modules/<version> of the extracted
 * kernel package) to `destDir` as <name>.ko, and write `destDir/load-order`.
 * Returns the names copied, in load order.
 */
export async function installGuestModules(
  modulesDir: string,
  destDir: string,
  log: (line: string) => void,
): Promise<string[]> {
  const index = await indexModules(join(modulesDir, "kernel"));
  const builtin = await builtinModules(modulesDir);
  const loaded: string[] = [];
  for (const name of GUEST_MODULES) {
    const src = index.get(name);
    if (src) {
      await copyUncompressed(src, join(destDir, `${name}.ko`));
      loaded.push(name);
    } else if (builtin.has(name)) {
      log(`module ${name}: built into this kernel`);
    } else {
      log(`module ${name}: not in this kernel, skipped`);
    }
  }
  await writeFile(join(destDir, "load-order"), loaded.join("\n") + "\n");
  return loaded;
}
