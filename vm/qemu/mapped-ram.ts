// Mapped-RAM snapshots: a snapshot's guest RAM is a plain file that a restored QEMU maps
// instead of reading it through the migration stream (issue #26: streaming and decompressing
// 105 MiB was most of a restore). Only the devices' state still goes through the stream.
//
// - The machine that saves a snapshot runs with its RAM in a shared file (memory-backend-file,
//   share=on) on tmpfs, and migrates with QEMU's `x-ignore-shared` capability: the stream skips
//   shared RAM blocks, whose contents are in the file already (the guest is stopped). The file
//   is then copied beside the snapshot (zero blocks left as holes) while the guest stays stopped.
// - A restored machine maps that file copy-on-write (share=off: MAP_PRIVATE): the pages it reads
//   come from the page cache, the ones it writes become its own, and the snapshot's file is
//   never written, so every restore maps the same file with no copy. QEMU checks that
//   `x-ignore-shared` is on at both ends, so the restored QEMU starts with `-incoming defer` and
//   gets the capability over QMP before `migrate-incoming`. With share=off its RAM block is not
//   skipped on its side, but the stream has no pages for it: what the guest sees is the file.
// - The capability is switched off again once the stream is done: a later `migrate` (a bundle,
//   hooks/bundles) must carry the RAM, and a revived QEMU has no such capability.

import { closeSync, ftruncateSync, openSync, read, statfsSync, unlinkSync } from "node:fs";
import { open } from "node:fs/promises";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import type { QmpClient } from "./qmp.ts";
import { qemuOptValue } from "./qemu-argv.ts";

/** The RAM block's id: the name QEMU gives the default one, so the streams name the same block. */
const RAM_ID = "pc.ram";
const TMPFS_MAGIC = 0x01021994;

/** The arguments that put the guest's RAM in `file`: shared (the saver) or copy-on-write (a restore). */
export function ramFileArgs(file: string, memoryMiB: number, share: boolean): string[] {
  return [
    "-object", `memory-backend-file,id=${RAM_ID},size=${memoryMiB}M,mem-path=${qemuOptValue(file)},share=${share ? "on" : "off"}`,
    "-machine", `memory-backend=${RAM_ID}`,
  ];
}

/** Switch `x-ignore-shared` on or off (both ends of a mapped-RAM migration, then off again). */
export async function ignoreSharedRam(qmp: QmpClient, on: boolean): Promise<void> {
  await qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: on }] });
}

/** Start loading the devices' state into a QEMU started with `-incoming defer` and its RAM mapped. */
export async function startMappedIncoming(qmp: QmpClient, uri: string): Promise<void> {
  await ignoreSharedRam(qmp, true);
  await qmp.execute("migrate-incoming", { uri });
}

/**
 * /dev/shm when it is a tmpfs with room for `bytes` and as much again to spare (the saver's
 * RAM is better not written back to a disk; a container's small /dev/shm, 64 MiB by default
 * in Docker, would make QEMU die of SIGBUS once the guest touched more than fits).
 */
function tmpfsDir(bytes: number): string | undefined {
  try {
    const s = statfsSync("/dev/shm");
    return s.type === TMPFS_MAGIC && s.bavail * s.bsize >= 2 * bytes ? "/dev/shm" : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The saving machine's RAM: a file on tmpfs (else in `fallbackDir`) that QEMU maps shared.
 * Its name is unlinked as soon as QEMU has mapped it (`unlink()`, once QMP answers), so it is
 * never left behind; this process keeps it open to copy it into the snapshot.
 */
export class SaverRam {
  private fd: number | undefined;
  private linked = true;

  private constructor(
    readonly path: string,
    readonly bytes: number,
  ) {
    this.fd = openSync(path, "wx+", 0o600);
  }

  static create(memoryMiB: number, fallbackDir: string): SaverRam {
    const bytes = memoryMiB * 2 ** 20;
    const dir = tmpfsDir(bytes) ?? fallbackDir;
    const ram = new SaverRam(join(dir, `haltpoint-ram-${process.pid}-${randomBytes(6).toString("hex")}`), bytes);
    // Sized here: QEMU only sizes a file it created itself.
    ftruncateSync(ram.fd!, ram.bytes);
    return ram;
  }

  args(memoryMiB: number): string[] {
    return ramFileArgs(this.path, memoryMiB, true);
  }

  /** QEMU has mapped the file (its QMP answers): the name can go. */
  unlink(): void {
    if (!this.linked) return;
    this.linked = false;
    try {
      unlinkSync(this.path);
    } catch {
      /* gone */
    }
  }

  /**
   * Copy the RAM (the guest stopped) to `dest`, leaving 64 KiB blocks of zeros as holes, and
   * return the sha256 of all of it (holes read as zeros, so it is the digest of the file).
   */
  async copyTo(dest: string): Promise<string> {
    if (this.fd === undefined) throw new Error("the saving machine's RAM file is closed");
    const CHUNK = 4 << 20;
    const BLOCK = 64 << 10;
    const zero = Buffer.alloc(BLOCK);
    const buf = Buffer.allocUnsafe(CHUNK);
    const hash = createHash("sha256");
    const src = this.fd;
    const out = await open(dest, "w", 0o600);
    try {
      await out.truncate(this.bytes);
      for (let off = 0; off < this.bytes; off += CHUNK) {
        const n = await readAt(src, buf, Math.min(CHUNK, this.bytes - off), off);
        hash.update(buf.subarray(0, n));
        for (let b = 0; b < n; b += BLOCK) {
          const block = buf.subarray(b, Math.min(b + BLOCK, n));
          if (!block.equals(zero.subarray(0, block.length))) await out.write(block, 0, block.length, off + b);
        }
      }
      await out.sync();
    } finally {
      await out.close();
    }
    return hash.digest("hex");
  }

  close(): void {
    this.unlink();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

async function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const n = await new Promise<number>((resolve, reject) => read(fd, buf, done, length - done, position + done, (e, r) => (e ? reject(e) : resolve(r))));
    if (n === 0) throw new Error(`the saving machine's RAM file ended at ${position + done} bytes`);
    done += n;
  }
  return done;
}
