// Housekeeping of the guest image cache: each image is a directory named by its key (a hash
// of everything that went into it), so a new Debian kernel or a changed guest-init.sh makes
// a new one and the old stays behind. An image's `last-used` file is touched whenever a run
// uses it; images nobody used for a while are removed when a new one is built, and
// `haltpoint image prune` removes every image but the current one.

import { readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";

const LAST_USED = "last-used";
const KEY_DIR = /^[0-9a-f]{16}$/;

/** Images unused this long are removed when a new image is built. */
export const UNUSED_IMAGE_DAYS = 30;

export interface CachedImage {
  key: string;
  dir: string;
  /** When a run last used it (or when it was built, if never since). */
  lastUsedMs: number;
  bytes: number;
}

/** Record that the image in `dir` was just used. Best effort: a read-only cache stays as it is. */
export async function markUsed(dir: string): Promise<void> {
  const file = join(dir, LAST_USED);
  const now = new Date();
  // The stamp only orders pruning (oldest first): a cache it cannot stamp still works.
  await utimes(file, now, now).catch(() => writeFile(file, "").catch(() => {}));
}

/** Every image in the cache (not the scratch directories of builds in progress). */
export async function listCachedImages(root: string): Promise<CachedImage[]> {
  const images: CachedImage[] = [];
  for (const key of await readdir(root).catch(() => [] as string[])) {
    if (!KEY_DIR.test(key)) continue;
    const dir = join(root, key);
    let bytes = 0;
    let newest = 0;
    for (const f of await readdir(dir).catch(() => [] as string[])) {
      const st = await stat(join(dir, f)).catch(() => undefined);
      if (!st) continue;
      if (f !== LAST_USED) bytes += st.size;
      newest = Math.max(newest, st.mtimeMs);
    }
    images.push({ key, dir, lastUsedMs: newest, bytes });
  }
  return images.sort((a, b) => b.lastUsedMs - a.lastUsedMs);
}

/**
 * Remove cached images other than `keep`; with `unusedForMs`, only those unused that long.
 * Each is first renamed to a `.build-` scratch name (atomic: a reader sees the whole image or
 * none; a removal cut short is cleaned up like a killed build's scratch).
 */
export async function pruneImages(root: string, o: { keep?: string; unusedForMs?: number }): Promise<CachedImage[]> {
  const cutoff = o.unusedForMs === undefined ? Infinity : Date.now() - o.unusedForMs;
  const removed: CachedImage[] = [];
  for (const image of await listCachedImages(root)) {
    if (image.key === o.keep || image.lastUsedMs >= cutoff) continue;
    const doomed = join(root, `.build-pruned-${image.key}-${process.pid}`);
    try {
      await rename(image.dir, doomed);
    } catch {
      continue; // already gone (another process pruned it)
    }
    await rm(doomed, { recursive: true, force: true });
    removed.push(image);
  }
  return removed;
}
