// A killed Debian build leaves proc, sysfs and tmpfs mounted inside its scratch chroot; the
// next build's sweep of stale scratch dirs must detach them and go on (it failed every later
// Debian build with EBUSY, and a recursive rm must never walk into the host's /proc or /sys).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { removeStaleScratch } from "../vm/image/build-image.ts";
import { mountsUnder } from "../vm/image/scratch-dir.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

test("a stale build dir with proc, sysfs and tmpfs still mounted in its chroot is unmounted and removed", async (t) => {
  if (process.getuid?.() !== 0) return t.skip("mounting needs root");
  const root = tempDir("hp-scratch-test-", "/var/tmp");
  const stale = join(root, ".build-0123456789abcdef-XXXXXX");
  const chroot = join(stale, "root");
  for (const d of ["proc", "sys", "dev/shm"]) mkdirSync(join(chroot, d), { recursive: true });
  await execa("mount", ["-t", "proc", "proc", join(chroot, "proc")]);
  await execa("mount", ["-t", "sysfs", "sys", join(chroot, "sys")]);
  await execa("mount", ["-t", "tmpfs", "tmpfs", join(chroot, "dev/shm")]);
  writeFileSync(join(chroot, "dev/shm", "left"), "x");
  const fresh = join(root, ".build-fedcba9876543210-YYYYYY");
  mkdirSync(fresh);
  const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
  utimesSync(stale, twoHoursAgo, twoHoursAgo);
  assert.equal((await mountsUnder(stale)).length, 3);

  const lines: string[] = [];
  await removeStaleScratch(root, (l) => lines.push(l));

  assert.deepEqual(lines, [], "nothing failed");
  assert.deepEqual(await mountsUnder(root), [], "no mount is left under the cache");
  assert.equal(existsSync(stale), false, "the stale dir is gone");
  assert.equal(existsSync(fresh), true, "a build younger than an hour is another process's: kept");
  assert.ok(existsSync("/proc/self/status") && existsSync("/sys/kernel"), "the host's /proc and /sys are untouched");
  await execa("rm", ["-rf", root]);
});
