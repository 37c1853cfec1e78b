// A frozen machine's disk as a bundle keeps it (hooks/bundles/bundle-format.ts): what the guest
// wrote since its image (the top of its disk's chain: QEMU's throw-away overlay of a cold boot,
// the snapshot-boot overlay, a kept disk), copied by QEMU itself with `blockdev-backup sync=top`
// into a compressed qcow2 while the guest is stopped, and the image below it (the base), made
// once per image into a zstd-compressed qcow2 that a revived QEMU reads directly as the
// backing file: nothing is decompressed at revive. Memory and disk are saved at one moment,
// so a revived guest's page cache and journal find the disk as they left it.

import { createHash } from "node:crypto";
import { existsSync, readdirSync, realpathSync, statSync } from "node:fs";
import { chmod, copyFile, mkdir, rename, rm, utimes } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import type { QmpClient, QmpEvent } from "./qmp.ts";

/** The disk of a running QEMU: its block device and the file below its writable top. */
export interface DiskChain {
  device: string;
  /** The image the top layer is an overlay of (a plain file path). */
  base: string;
  baseFormat: string;
  virtualBytes: number;
}

interface BlockImage {
  filename: string;
  format: string;
  "virtual-size": number;
  "backing-image"?: BlockImage;
}
interface BlockInfo {
  device: string;
  inserted?: { image: BlockImage; drv: string };
}

/** The machine's one disk (a virtio drive haltpoint's argv builder added), or why a bundle cannot carry it. */
export async function diskChain(qmp: QmpClient): Promise<DiskChain | { unsaveable: string }> {
  const disks = (await qmp.execute<BlockInfo[]>("query-block")).filter((b) => b.inserted);
  if (disks.length !== 1) return { unsaveable: `it has ${disks.length} disks, a bundle carries one` };
  const d = disks[0]!;
  const below = d.inserted!.image["backing-image"];
  if (!below) return { unsaveable: "its disk is written in place (no overlay), a bundle carries the writes over an image" };
  if (!below.filename.startsWith("/")) return { unsaveable: `its disk's image is not a plain file (${below.filename.slice(0, 80)})` };
  return { device: d.device, base: below.filename, baseFormat: below.format, virtualBytes: d.inserted!.image["virtual-size"] };
}

/**
 * Copy the disk's top layer (the guest's writes since its image) into `target`, a compressed
 * qcow2 whose header names `backingName` (a qcow2, relative to `target`'s directory). The
 * guest must be stopped: the copy is of one moment, the moment its memory is saved.
 */
export async function saveDiskWrites(qmp: QmpClient, chain: DiskChain, target: string, backingName: string): Promise<void> {
  const job = "hp-bundle-disk";
  // Made here with no backing file (QEMU would open the base for it) and given its backing name after.
  await qemuImg(["create", "-q", "-f", "qcow2", target, String(chain.virtualBytes)]);
  let stop = (_err?: Error) => {};
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => stop(new Error("copying the disk's writes took over 10 minutes")), 600_000);
    const onEvent = (e: QmpEvent) => {
      const data = e.data as { device?: string; error?: string } | undefined;
      if (data?.device !== job) return;
      if (e.event === "BLOCK_JOB_COMPLETED") stop(data.error ? new Error(`QEMU could not copy the disk's writes: ${data.error}`) : undefined);
      else if (e.event === "BLOCK_JOB_CANCELLED") stop(new Error("QEMU cancelled copying the disk's writes"));
    };
    const onClose = () => stop(new Error("QEMU exited while copying the disk's writes"));
    stop = (err) => {
      clearTimeout(timer);
      qmp.off("event", onEvent);
      qmp.off("close", onClose);
      if (err) reject(err);
      else resolve();
    };
    qmp.on("event", onEvent);
    qmp.on("close", onClose);
  });
  // The target is a node of its own (blockdev-add): drive-backup would open it with the source's
  // flags, and a cold boot's disk (snapshot=on) is temporary, so the copy was deleted on close.
  const node = "hp-bundle-target";
  try {
    await qmp.execute("blockdev-add", { driver: "qcow2", "node-name": node, file: { driver: "file", filename: target } });
  } catch (e) {
    // No job was started: stop listening; the error that matters is QEMU's answer, thrown here.
    stop();
    throw e;
  }
  try {
    await qmp.execute("blockdev-backup", { "job-id": job, device: chain.device, target: node, sync: "top", compress: true, "auto-dismiss": true });
  } catch (e) {
    stop(); // as above: no job, QEMU's answer is thrown
    const del = await qmp.execute("blockdev-del", { "node-name": node }).then(
      () => "",
      (d: Error) => `; removing its target node failed too: ${d.message}`,
    );
    throw new Error(`${(e as Error).message}${del}`);
  }
  let copied: Error | undefined;
  await done.catch((e: Error) => void (copied = e));
  // The copy is complete only once QEMU has closed it (its qcow2 metadata written).
  await qmp.execute("blockdev-del", { "node-name": node });
  if (copied) throw copied;
  await qemuImg(["rebase", "-u", "-f", "qcow2", "-b", backingName, "-F", "qcow2", target]);
}

/** Compressed images kept between saves (a Debian image takes seconds to compress), the newest few. */
const KEPT_IMAGES = 4;
function keptImagesDir(): string {
  return process.env.HALTPOINT_BUNDLE_IMAGE_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "haltpoint", "bundle-images");
}

/**
 * `image` as a zstd-compressed qcow2 at `target`, its whole chain in one file with no backing.
 * Kept in the cache for the next save of the same file: keyed by its path, inode, size and
 * change times (any write changes its ctime), so a changed image is compressed again.
 * Resolves with why the cache could not be used or filled (the save goes on), if it could not.
 */
export async function compressBaseImage(image: string, format: string, target: string): Promise<{ cacheProblem?: string; fromCache: boolean }> {
  const st = statSync(image, { bigint: true });
  const key = createHash("sha256").update(`${realpathSync(image)}\0${format}\0${st.dev}\0${st.ino}\0${st.size}\0${st.mtimeNs}\0${st.ctimeNs}`).digest("hex").slice(0, 32);
  const dir = keptImagesDir();
  const kept = join(dir, `${key}.qcow2`);
  if (existsSync(kept)) {
    await copyFile(kept, target);
    await utimes(kept, new Date(), new Date()); // the newest are kept
    return { fromCache: true };
  }
  const part = `${target}.part`;
  try {
    await qemuImg(["convert", "-U", "-f", format, "-O", "qcow2", "-c", "-o", "compression_type=zstd", image, part]);
    await rename(part, target);
  } finally {
    await rm(part, { force: true });
  }
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await copyFile(target, `${kept}.part`);
    await chmod(`${kept}.part`, 0o600); // a user's own disk image may hold secrets
    await rename(`${kept}.part`, kept);
    const all = readdirSync(dir).filter((n) => n.endsWith(".qcow2")).map((n) => ({ n, t: statSync(join(dir, n)).mtimeMs }));
    for (const old of all.sort((a, b) => b.t - a.t).slice(KEPT_IMAGES)) await rm(join(dir, old.n), { force: true });
    return { fromCache: false };
  } catch (e) {
    await rm(`${kept}.part`, { force: true });
    return { fromCache: false, cacheProblem: `could not keep the compressed image in ${dir}: ${(e as Error).message}` };
  }
}

async function qemuImg(args: string[]): Promise<void> {
  const r = await execa("qemu-img", args, { reject: false });
  if (r.exitCode !== 0) throw new Error(`qemu-img ${args[0]} failed: ${r.code === "ENOENT" ? "not installed (apt-get install qemu-utils)" : r.stderr.trim()}`);
}
