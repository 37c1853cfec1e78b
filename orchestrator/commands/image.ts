// `haltpoint image build`: build (or find in the cache) the default guest image and
// print where it is. `haltpoint image prune`: remove every other cached image.

import { buildImage, DEFAULT_APPEND, defaultImageCacheRoot, imageInputs } from "../../vm/image/build-image.ts";
import { basename, join, resolve } from "node:path";
import { listCachedImages, pruneImages, UNUSED_IMAGE_DAYS } from "../../vm/image/image-cache.ts";
import { listSnapshots, pruneSnapshots } from "../../vm/qemu/snapshot-store.ts";

/** A snapshot of the current image not restored for this long is removed by `image prune`. */
const UNUSED_SNAPSHOT_DAYS = 7;

export interface ImageBuildCommandOptions {
  cacheDir?: string;
  force?: boolean;
  /** Build a Debian systemd guest with these packages (plus the base ones) instead of the default image. */
  debian?: string[];
  /** Debian: also write a NixOS-style `run-<name>-vm` start script for it into this directory. */
  startScript?: string;
  /** Debian: also write a raw disk that boots through its own bootloader (extlinux) here. */
  disk?: string;
  /** The machine name of the start script (default "debian"). */
  name?: string;
}

/** Progress goes to stderr, the result to stdout. Exit code 0 on success, 2 on failure. */
export async function imageBuildCommand(opts: ImageBuildCommandOptions): Promise<number> {
  const started = Date.now();
  if (opts.debian) return debianBuildCommand(opts.debian, opts, started);
  try {
    const image = await buildImage({
      cacheDir: opts.cacheDir,
      force: opts.force,
      log: (line) => process.stderr.write(`haltpoint image: ${line}\n`),
    });
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(`haltpoint image: ${image.reused ? "reused cached image" : `built in ${secs} s`}\n`);
    process.stdout.write(
      [
        `key:     ${image.key}`,
        `dir:     ${image.dir}`,
        `kernel:  ${image.kernel} (${image.kernelVersion})`,
        `initrd:  ${image.initrd}`,
        `append:  ${DEFAULT_APPEND}`,
      ].join("\n") + "\n",
    );
    return 0;
  } catch (e) {
    return failed(e);
  }
}

async function debianBuildCommand(packages: string[], opts: ImageBuildCommandOptions, started: number): Promise<number> {
  const { buildDebianImage, DEBIAN_PACKAGE_NAME } = await import("../../vm/image/debian-image.ts");
  const bad = packages.find((p) => !DEBIAN_PACKAGE_NAME.test(p));
  if (bad !== undefined) return failed(new Error(`--debian: ${JSON.stringify(bad)} is not a Debian package name`));
  try {
    const log = (line: string) => process.stderr.write(`haltpoint image: ${line}\n`);
    const image = await buildDebianImage(packages, { cacheDir: opts.cacheDir, force: opts.force, log });
    const byo = opts.startScript || opts.disk ? await import("../../vm/image/debian-byo.ts") : undefined;
    const script = opts.startScript ? await byo!.writeStartScript(image, resolve(opts.startScript), opts.name) : undefined;
    if (opts.disk) await byo!.writeBootableDisk(image, resolve(opts.disk), log);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(`haltpoint image: ${image.reused ? "reused cached image" : `built in ${secs} s`}\n`);
    process.stdout.write(
      [
        `key:      ${image.key}`,
        `dir:      ${image.dir}`,
        `packages: ${image.packages.join(" ") || "(base only)"}`,
        `kernel:   ${image.kernel} (${image.kernelVersion})`,
        `initrd:   ${image.initrd}`,
        `rootfs:   ${image.rootfs}`,
        ...(script ? [`script:   ${script}`] : []),
        ...(opts.disk ? [`disk:     ${resolve(opts.disk)}`] : []),
      ].join("\n") + "\n",
    );
    return 0;
  } catch (e) {
    return failed(e);
  }
}

/** `haltpoint image list`: the default images and the Debian images in the cache. */
export async function imageListCommand(opts: { cacheDir?: string }): Promise<number> {
  try {
    const { listDebianImages } = await import("../../vm/image/debian-image.ts");
    const root = opts.cacheDir ?? defaultImageCacheRoot();
    const { key } = await imageInputs();
    const lines: string[] = [];
    for (const i of await listCachedImages(root)) {
      lines.push(`${i.key}  default  ${mib(i.bytes).padStart(10)}  last used ${new Date(i.lastUsedMs).toISOString()}${i.key === key ? "  (current)" : ""}`);
      lines.push(...(await snapshotLines(i.dir)));
    }
    for (const i of await listDebianImages(opts.cacheDir)) {
      const config = [i.files.length ? `files: ${i.files.join(" ")}` : "", i.setup ? "a setup script" : ""].filter(Boolean).join("; ");
      lines.push(`${i.key}  debian   ${mib(i.bytes).padStart(10)}  last used ${new Date(i.lastUsedMs).toISOString()}  packages: ${i.packages.join(" ") || "(base only)"}${config ? `; ${config}` : ""}`);
      lines.push(...(await snapshotLines(i.dir)));
    }
    process.stdout.write(lines.length ? lines.join("\n") + "\n" : `no images in ${root}\n`);
    return 0;
  } catch (e) {
    return failed(e);
  }
}

/** An image's snapshots, one line each: their disk usage (a mapped RAM file is sparse) and last use. */
async function snapshotLines(imageDir: string): Promise<string[]> {
  const snapshots = await listSnapshots(join(imageDir, "snapshots"));
  return snapshots.map((s) => `  snapshot ${basename(s.file, ".zst")}  ${mib(s.bytes).padStart(10)} on disk  last used ${new Date(s.lastUsedMs).toISOString()}${s.otherQemu ? "  (saved by another QEMU)" : ""}`);
}

function failed(e: unknown): number {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`${msg.startsWith("haltpoint image:") ? msg : `haltpoint image: ${msg}`}\n`);
  return 2;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** One line per cached image: removed, or kept because it is the current one. */
export async function imagePruneCommand(opts: { cacheDir?: string; allDebian?: boolean }): Promise<number> {
  try {
    const root = opts.cacheDir ?? defaultImageCacheRoot();
    // The current key comes from the same inputs a build would use (apt-cache, host libraries).
    const { key } = await imageInputs();
    const kept = (await listCachedImages(root)).filter((i) => i.key === key);
    const removed = await pruneImages(root, { keep: key });
    for (const i of removed) {
      process.stdout.write(`removed ${i.key} (${mib(i.bytes)}, last used ${new Date(i.lastUsedMs).toISOString()})\n`);
    }
    for (const i of kept) process.stdout.write(`kept    ${i.key} (${mib(i.bytes)}, the current image)\n`);
    // Debian images: those no run used for UNUSED_IMAGE_DAYS (all of them with --debian).
    const { listDebianImages, pruneDebianImages } = await import("../../vm/image/debian-image.ts");
    const removedDebian = await pruneDebianImages(opts.cacheDir, { unusedForMs: opts.allDebian ? undefined : UNUSED_IMAGE_DAYS * 86_400_000 });
    for (const i of removedDebian) {
      process.stdout.write(`removed debian ${i.key} (${mib(i.bytes)}, packages: ${i.packages.join(" ") || "(base only)"}, last used ${new Date(i.lastUsedMs).toISOString()})\n`);
    }
    removed.push(...removedDebian);
    // The snapshots of the images that stay (those of removed images went with them).
    const cutoff = Date.now() - UNUSED_SNAPSHOT_DAYS * 86_400_000;
    const keptDirs = [...kept, ...(await listDebianImages(opts.cacheDir))].map((i) => join(i.dir, "snapshots"));
    const staleSnapshots = (await Promise.all(keptDirs.map((d) => pruneSnapshots(d, cutoff)))).flat();
    for (const s of staleSnapshots) {
      process.stdout.write(`removed snapshot ${s.file} (${mib(s.bytes)}, ${s.otherQemu ? "saved by another QEMU" : `unused since ${new Date(s.lastUsedMs).toISOString()}`})\n`);
    }
    const freed = [...removed, ...staleSnapshots].reduce((n, i) => n + i.bytes, 0);
    process.stdout.write(`${removed.length} image${removed.length === 1 ? "" : "s"} and ${staleSnapshots.length} snapshot${staleSnapshots.length === 1 ? "" : "s"} removed from ${root}, ${mib(freed)} freed\n`);
    return 0;
  } catch (e) {
    return failed(e);
  }
}
