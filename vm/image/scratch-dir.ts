// Removing a build's scratch directory. A Debian build's chroot has proc, sys, dev/pts and
// dev/shm mounted inside it while mmdebstrap runs; a build that is killed (a CI job cancelled,
// a test's timeout) leaves them mounted, and a plain recursive rm then fails with EBUSY on the
// first mount point — on every later build too, since each one sweeps stale scratch dirs.
import { readFile, rm } from "node:fs/promises";
import { resolve, sep } from "node:path";
import { execa } from "execa";

/** The mount points at or under `dir`, deepest first (from /proc/self/mountinfo). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const root = resolve(dir);
  const info = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  const points = info
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    // mountinfo escapes space, tab, newline and backslash as octal.
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))))
    .filter((p) => p === root || p.startsWith(root + sep));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Remove a scratch directory, first detaching (umount -l) whatever a killed build left
 * mounted inside it, so that rm never recurses into the host's /proc or /sys either.
 */
export async function removeScratchDir(dir: string): Promise<void> {
  for (const point of await mountsUnder(dir)) {
    const r = await execa("umount", ["-l", point], { reject: false });
    if (r.exitCode !== 0) throw new Error(`cannot unmount ${point} (left mounted by a killed build): ${(r.stderr || r.stdout).trim()}`);
  }
  await rm(dir, { recursive: true, force: true });
}
