// `haltpoint image build`: build (or find in the cache) the default guest image and
// print where it is. `haltpoint image prune`: remove every other cached image.

import { buildImage, DEFAULT_APPEND, defaultImageCacheRoot, imageInputs } from "./build-image.ts";
import { join } from "node:path";
import { listCachedImages, pruneImages } from "./image-cache.ts";
import { pruneSnapshots } from "../qemu/snapshot-store.ts";

/** A snapshot of the current image not restored for this long is removed by `image prune`. */
const UNUSED_SNAPSHOT_DAYS = 7;

export interface ImageBuildCommandOptions {
  cacheDir?: string;
  force?: boolean;
}

/** Progress goes to stderr, the result to stdout. Exit code 0 on success, 2 on failure. */
export async function imageBuildCommand(opts: ImageBuildCommandOptions): Promise<number> {
  const started = Date.now();
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

function failed(e: unknown): number {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`${msg.startsWith("haltpoint image:") ? msg : `haltpoint image: ${msg}`}\n`);
  return 2;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** One line per cached image: removed, or kept because it is the current one. */
export async function imagePruneCommand(opts: { cacheDir?: string }): Promise<number> {
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
    // The current image's snapshots (those of removed images went with them).
    const staleSnapshots = (await Promise.all(kept.map((i) => pruneSnapshots(join(i.dir, "snapshots"), Date.now() - UNUSED_SNAPSHOT_DAYS * 86_400_000)))).flat();
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
