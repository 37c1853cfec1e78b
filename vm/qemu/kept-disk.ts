import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join, resolve } from "node:path";
import { execa } from "execa";
import type { DiskImage } from "./qemu-argv.ts";

/**
 * --keep-machine-state for a disk image: a writable qcow2 overlay of it in `dir`, made on
 * first use (atomically) and reused by later runs, so what the guest wrote stays; the image
 * itself is never written.
 */
export async function keptDiskImage(dir: string, image: string, log: (msg: string) => void): Promise<DiskImage> {
  const overlay = join(dir, "disk.qcow2");
  if (existsSync(overlay)) {
    log(`reusing its kept disk ${overlay} (--keep-machine-state)`);
  } else {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const format = image.endsWith(".qcow2") ? "qcow2" : "raw";
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", resolve(image), "-F", format, `${overlay}.part`]);
    renameSync(`${overlay}.part`, overlay);
    log(`keeping its disk in ${overlay} (--keep-machine-state)`);
  }
  return { path: overlay, format: "qcow2", snapshot: false };
}
