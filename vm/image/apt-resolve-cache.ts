// The exact package versions the guest image is made of, kept between runs while apt's state
// is unchanged. Resolving them runs apt-cache three times, each parsing every package list:
// 1.5–2.5 s on a busy 2-core host, which every `haltpoint run` paid before its first test
// (issue #26, bench/vm's targets table). apt's answers depend only on its lists, its sources,
// preferences and configuration, and dpkg's status: a fingerprint of those files (path, inode,
// size, mtime) keys the cached answer, so an `apt-get update`, a new source or pin, or an
// installed package resolves again.

import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { ResolvedPackage } from "./apt-packages.ts";

/** What apt-cache's answers depend on (Debian's default locations). */
const APT_STATE = ["/var/lib/apt/lists", "/var/lib/dpkg/status", "/etc/apt"];

async function aptStateFingerprint(statePaths: readonly string[]): Promise<string> {
  const hash = createHash("sha256").update(`APT_CONFIG=${process.env.APT_CONFIG ?? ""}\n`);
  const walk = async (path: string, depth: number): Promise<void> => {
    const s = await stat(path).catch(() => undefined);
    hash.update(s ? `${path}:${s.ino}:${s.size}:${s.mtimeMs}\n` : `${path}:missing\n`);
    if (s?.isDirectory() && depth < 3) for (const name of (await readdir(path).catch(() => [] as string[])).sort()) await walk(join(path, name), depth + 1);
  };
  for (const p of statePaths) await walk(p, 0);
  return hash.digest("hex");
}

interface CachedAnswer {
  fingerprint: string;
  packages: ResolvedPackage[];
}

/** `resolve()`'s answer, from `cacheFile` when apt's state (`statePaths`) is the one it was given for. */
export async function resolvedWhileAptUnchanged(cacheFile: string, resolve: () => Promise<ResolvedPackage[]>, statePaths: readonly string[] = APT_STATE): Promise<ResolvedPackage[]> {
  const fingerprint = await aptStateFingerprint(statePaths);
  const cached = await readFile(cacheFile, "utf8")
    .then((t) => JSON.parse(t) as CachedAnswer)
    .catch(() => undefined);
  if (cached?.fingerprint === fingerprint && Array.isArray(cached.packages) && cached.packages.every((p) => typeof p?.name === "string" && typeof p?.version === "string")) return cached.packages;
  const packages = await resolve();
  // Best effort: an unwritable cache only means the next run resolves again.
  try {
    await mkdir(dirname(cacheFile), { recursive: true });
    const tmp = `${cacheFile}.partial-${process.pid}`;
    await writeFile(tmp, JSON.stringify({ fingerprint, packages } satisfies CachedAnswer));
    await rename(tmp, cacheFile);
  } catch {
    /* resolved again next time */
  }
  return packages;
}
