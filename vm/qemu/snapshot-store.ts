// Where snapshots live and which one a machine may start from. A snapshot is only valid for
// the exact QEMU, kernel, initrd and machine shape it was saved from (everything that must
// match for `-incoming`), so the key hashes all of them; it sits beside the guest image it
// was booted from, so `haltpoint image prune` removing an image removes its snapshots too.

import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, readSync, realpathSync, statSync, unlinkSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { sha256File } from "../file-digest.ts";
import { findOnPath } from "../find-on-path.ts";
import { DEFAULT_APPEND } from "../image/guest-params.ts";
import { QEMU_BINARY } from "./qemu-argv.ts";
import { SNAPSHOT_FORMAT_VERSION } from "./snapshot-format.ts";

/** Everything about a machine that its snapshot must share with it. */
export interface SnapshotShape {
  kernel: string;
  initrd: string;
  memoryMiB: number;
  cores: number;
  accel: string;
  /** NICs on virtual networks (each is a device in the saved state). */
  vnets: number;
  /** The node's own qemuArgs and kernel append, which may add devices or change the guest. */
  extraArgs: readonly string[];
  append: string;
  allowReboot: boolean;
  /** The base image of the disk whose overlay is saved with the snapshot (Debian guests). */
  disk?: string;
  /** The rule that said the guest was at rest when it was saved (systemd guests): a snapshot
   *  saved under another (older) rule may hold a service mid-start. */
  atRest?: string;
}

function fileIdentity(path: string): string {
  const real = realpathSync(path);
  const s = statSync(real);
  return `${real}:${s.size}:${s.mtimeMs}`;
}

let qemuIdentity: string | undefined;

/** The first four bytes of every zstd frame. */
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** The QEMU binary as a snapshot sees it: a new QEMU build cannot load an old stream safely. */
function qemuBinaryIdentity(): string {
  if (qemuIdentity === undefined) {
    const bin = findOnPath(QEMU_BINARY);
    qemuIdentity = bin ? fileIdentity(bin) : "missing";
  }
  return qemuIdentity;
}

/** The snapshot directory of the image whose kernel is `kernel`. */
export function snapshotDirOf(kernel: string): string {
  return join(dirname(kernel), "snapshots");
}

export function snapshotKey(shape: SnapshotShape): string {
  const facts = {
    ...shape,
    format: SNAPSHOT_FORMAT_VERSION,
    qemu: qemuBinaryIdentity(),
    kernel: fileIdentity(shape.kernel),
    initrd: fileIdentity(shape.initrd),
    ...(shape.disk ? { disk: fileIdentity(shape.disk) } : {}),
    defaultAppend: DEFAULT_APPEND,
  };
  return createHash("sha256").update(JSON.stringify(facts)).digest("hex").slice(0, 16);
}

/** The snapshot file for a shape; it exists once some machine of that shape saved it. */
export class SnapshotSlot {
  readonly file: string;
  private readonly lock: string;
  private locked = false;

  /** The disk overlay saved with the snapshot, for shapes with a disk. */
  readonly diskFile: string;

  constructor(
    readonly dir: string,
    readonly key: string,
    readonly hasDisk = false,
  ) {
    this.file = join(dir, `${key}.zst`);
    this.lock = join(dir, `${key}.lock`);
    this.diskFile = diskFileOf(this.file);
  }

  static forShape(shape: SnapshotShape): SnapshotSlot {
    return new SnapshotSlot(snapshotDirOf(shape.kernel), snapshotKey(shape), shape.disk !== undefined);
  }

  get partialDiskFile(): string {
    return `${this.diskFile}.partial-${process.pid}`;
  }

  /**
   * Whether the snapshot is there and looks whole: a zstd frame of the size recorded when
   * it was saved. "absent", "ok", or why it is damaged (a truncated or overwritten file is
   * found here, before QEMU tries to load it). Marks a good one used now, for `image prune`.
   */
  check(): "absent" | "ok" | { damaged: string } {
    let size: number;
    try {
      size = statSync(this.file).size;
    } catch {
      return "absent";
    }
    const recorded = readRecord(this.sizeFile)?.bytes ?? 0;
    if (size !== recorded) return { damaged: `${size} bytes, ${recorded ? `${recorded} were saved` : "its size record is missing"}` };
    const magic = Buffer.alloc(4);
    const fd = openSync(this.file, "r");
    try {
      readSync(fd, magic, 0, 4, 0);
    } finally {
      closeSync(fd);
    }
    if (!magic.equals(ZSTD_MAGIC)) return { damaged: "not a zstd stream" };
    if (this.hasDisk) {
      try {
        statSync(this.diskFile);
      } catch {
        return { damaged: "its disk overlay is missing" };
      }
    }
    const now = new Date();
    utimesSync(this.file, now, now);
    return "ok";
  }

  private get sizeFile(): string {
    return recordFileOf(this.file);
  }

  /** Move a completely written snapshot into place, with its size and digest beside it. */
  async commit(): Promise<void> {
    const size = statSync(this.partialFile).size;
    const sha256 = await sha256File(this.partialFile);
    writeFileSync(this.sizeFile, JSON.stringify({ bytes: size, qemu: qemuBinaryIdentity(), sha256 } satisfies SnapshotRecord));
    // The disk first: the snapshot file appearing is what makes the slot usable.
    if (this.hasDisk) await rename(this.partialDiskFile, this.diskFile);
    await rename(this.partialFile, this.file);
  }

  /**
   * Whether the snapshot's bytes are the ones saved (its digest): why not, or undefined when
   * they are. Run beside the restore (it reads the whole file, ~0.1 s per 40 MiB): a corrupt
   * stream of the right size loads into QEMU without an error, its guest's memory garbage.
   */
  async verify(): Promise<string | undefined> {
    const recorded = readRecord(this.sizeFile)?.sha256;
    if (!recorded) return "its digest record is missing";
    const actual = await sha256File(this.file).catch((e: Error) => `unreadable: ${e.message}`);
    return actual === recorded ? undefined : actual.startsWith("unreadable") ? actual : "its bytes differ from the saved ones (sha256)";
  }

  /**
   * Become the one machine that saves this snapshot. False when another live process is
   * saving it (this machine then boots cold and saves nothing); a lock left by a dead
   * process is taken over.
   */
  claim(): boolean {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(this.lock, "wx", 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        this.locked = true;
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") return false;
        const owner = Number(readFileSafe(this.lock));
        if (owner > 0 && isAlive(owner)) return false;
        try {
          unlinkSync(this.lock);
        } catch {
          /* someone else took it over */
        }
      }
    }
    return false;
  }

  /** Where the saver writes before the snapshot is complete (renamed into place after). */
  get partialFile(): string {
    return `${this.file}.partial-${process.pid}`;
  }

  release(): void {
    if (!this.locked) return;
    this.locked = false;
    try {
      unlinkSync(this.lock);
    } catch {
      /* gone */
    }
  }

  /** A snapshot that failed to load is removed, so the next machine saves a good one. */
  discard(): void {
    for (const f of [this.file, this.sizeFile, this.diskFile]) {
      try {
        unlinkSync(f);
      } catch {
        /* gone */
      }
    }
  }
}

/** What is written beside a snapshot when it is complete. */
interface SnapshotRecord {
  bytes: number;
  /** The QEMU binary that saved it: once QEMU is upgraded the snapshot is stale. */
  qemu: string;
  /** Of the whole file: see verify(). */
  sha256: string;
}

const recordFileOf = (file: string) => `${file}.json`;
const diskFileOf = (file: string) => file.replace(/\.zst$/, ".disk.qcow2");

function readRecord(path: string): SnapshotRecord | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as SnapshotRecord;
  } catch {
    return undefined;
  }
}

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface CachedSnapshot {
  file: string;
  bytes: number;
  lastUsedMs: number;
  /** Saved by another QEMU binary than the one on PATH now (so never used again). */
  otherQemu: boolean;
}

/** Snapshots under one image's snapshot dir. */
export async function listSnapshots(dir: string): Promise<CachedSnapshot[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: CachedSnapshot[] = [];
  for (const n of names) {
    if (!/\.zst$/.test(n)) continue;
    const file = join(dir, n);
    const s = await stat(file).catch(() => undefined);
    if (s) out.push({ file, bytes: s.size, lastUsedMs: s.mtimeMs, otherQemu: readRecord(recordFileOf(file))?.qemu !== qemuBinaryIdentity() });
  }
  return out;
}

/**
 * Remove the stale snapshots of one image: saved by another QEMU, not used since
 * `cutoffMs`, and half-written ones of savers that are gone.
 */
export async function pruneSnapshots(dir: string, cutoffMs: number): Promise<CachedSnapshot[]> {
  const removed: CachedSnapshot[] = [];
  for (const s of await listSnapshots(dir)) {
    if (!s.otherQemu && s.lastUsedMs >= cutoffMs) continue;
    await rm(s.file, { force: true });
    await rm(recordFileOf(s.file), { force: true });
    await rm(diskFileOf(s.file), { force: true });
    removed.push(s);
  }
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    const m = /\.partial-(\d+)$/.exec(n);
    if (m && !isAlive(Number(m[1]))) await rm(join(dir, n), { force: true });
  }
  return removed;
}
