// Output paths are judged by the file system they are on (issue #29): a tmpfs, /dev/shm
// included, is a place for logs; a kernel file system is refused wherever it is mounted, in
// one line naming the flag, the path and the file system's type.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { UsageError } from "../orchestrator/selection/discovery.ts";
import { fileSystemType } from "../orchestrator/settings/file-system-type.ts";
import { ensureWritableDir } from "../orchestrator/settings/output-paths.ts";
import { haltpoint } from "./helpers/cli.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const dir = tempDir("hp-outpaths-");
const shm = tempDir("hp-outpaths-", "/dev/shm");
const mounts: string[] = [];
after(async () => {
  for (const m of mounts.reverse()) {
    const r = await execa("umount", [m], { reject: false });
    if (r.exitCode !== 0) console.error(`umount ${m}: ${r.stderr}`);
  }
  rmSync(dir, { recursive: true, force: true });
  rmSync(shm, { recursive: true, force: true });
});

/** Mount a fresh file system of `type` at `<dir>/<name>`; undefined (and why) where mount is impossible. */
async function mountFresh(type: string, name: string): Promise<{ at?: string; why?: string }> {
  if (process.getuid?.() !== 0) return { why: "mount needs root" };
  const at = join(dir, name);
  mkdirSync(at);
  const r = await execa("mount", ["-t", type, type, at], { reject: false });
  if (r.exitCode !== 0) return { why: `mount -t ${type} failed: ${r.stderr.trim()}` };
  mounts.push(at);
  return { at };
}

const refusal = (flag: string, path: string, type: string) => new RegExp(`^${flag} ${path}: \\S+ is a kernel file system \\(${type}\\), not a place for files$`);

test("/dev/shm and a freshly mounted tmpfs are places for logs: accepted and made", () => {
  assert.equal(fileSystemType("/dev/shm").name, "tmpfs");
  const logs = join(shm, "a", "logs");
  assert.equal(ensureWritableDir(logs, "--log-dir"), logs);
  assert.ok(existsSync(logs));
});

test("a fresh tmpfs mounted in a temp dir is accepted", async (t) => {
  const { at, why } = await mountFresh("tmpfs", "tmpfs");
  if (!at) return t.skip(why);
  assert.deepEqual(fileSystemType(at), { name: "tmpfs", kernel: false });
  const logs = join(at, "run", "logs");
  assert.equal(ensureWritableDir(logs, "--log-dir"), logs);
  assert.ok(existsSync(logs));
});

test("/proc, /sys and /dev/pts are refused by their type, in one line naming flag, path and type", () => {
  for (const [path, type] of [
    ["/proc/hp-logs", "proc"],
    ["/sys/hp/logs", "sysfs"],
    ["/dev/pts/hp-logs", "devpts"],
  ] as const) {
    assert.throws(() => ensureWritableDir(path, "--log-dir"), (e: Error) => e instanceof UsageError && refusal("--log-dir", path, type).test(e.message), path);
    assert.ok(!existsSync(path), `${path} not made`);
  }
});

test("a proc, sysfs or devtmpfs mounted outside /proc, /sys and /dev is refused all the same", async (t) => {
  for (const type of ["proc", "sysfs", "devtmpfs"]) {
    const { at, why } = await mountFresh(type, type);
    if (!at) {
      t.diagnostic(`${type} not tried: ${why}`);
      continue;
    }
    // devtmpfs carries tmpfs's magic number: the mount table tells them apart.
    assert.deepEqual(fileSystemType(at), { name: type, kernel: true });
    const logs = join(at, "hp-logs");
    assert.throws(() => ensureWritableDir(logs, "--json"), (e: Error) => refusal("--json", logs, type).test(e.message), type);
  }
});

test("the CLI writes its logs under /dev/shm (the run that failed in #29), and says a kernel fs's type", async () => {
  const suite = join(dir, "suite");
  mkdirSync(suite);
  writeFileSync(join(suite, "a.vmtest.mts"), `export default { name: "a", nodes: {}, async testScript() {} };\n`);
  const logs = join(shm, "cli", "logs");
  const ok = await haltpoint(["run", suite, "--log-dir", logs]);
  assert.equal(ok.exitCode, 0, ok.all);
  assert.ok(existsSync(join(logs, "a#1", "run.jsonl")), ok.all);
  const bad = await haltpoint(["run", suite, "--log-dir", "/dev/pts/hp-logs"]);
  assert.equal(bad.exitCode, 2, bad.all);
  assert.equal(bad.all.trim(), "haltpoint: --log-dir /dev/pts/hp-logs: /dev/pts is a kernel file system (devpts), not a place for files");
});
