// Packing a directory tree as an initramfs: cpio "newc" (the only format the kernel
// unpacks), gzip-compressed (CONFIG_RD_GZIP is on in every Debian kernel).

import { createWriteStream } from "node:fs";
import { readdir } from "node:fs/promises";
import { relative } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { execa } from "execa";
import { ImageBuildError } from "./apt-packages.ts";

/** Fail early, with the fix, when GNU cpio is missing. */
export async function requireCpio(): Promise<void> {
  const r = await execa("cpio", ["--version"], { reject: false });
  if (r.exitCode !== 0) {
    throw new ImageBuildError("haltpoint image: the `cpio` tool is missing; install it with `apt-get install cpio`");
  }
}

/** Every path under `root`, relative ("." first), sorted so the archive is reproducible. */
async function listTree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const paths = entries.map((e) => relative(root, `${e.parentPath}/${e.name}`));
  return [".", ...paths.sort()];
}

/**
 * Write `root` as a gzip'ed newc cpio archive to `outFile`. Everything is owned by
 * root:root in the archive (-R 0:0) whoever builds it: dropbear refuses an
 * authorized_keys path that another user owns.
 */
export async function packInitramfs(root: string, outFile: string): Promise<void> {
  const list = (await listTree(root)).join("\n") + "\n";
  const cpio = execa("cpio", ["--create", "--format=newc", "--owner=0:0", "--reproducible", "--quiet"], {
    cwd: root,
    input: list,
    encoding: "buffer",
    buffer: { stdout: false },
  });
  await Promise.all([pipeline(cpio.stdout, createGzip({ level: 9 }), createWriteStream(outFile)), cpio]);
}
