// Where snapshots live and which one a machine may start from. A snapshot is only valid for
// the exact QEMU, kernel, initrd and machine shape it was saved from (everything that must
// match for `-incoming`), so the key hashes all of them; it sits beside the guest image it
// was booted from, so `haltpoint image prune` removing an image removes its snapshots too.

import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, readSync, realpathSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync, writeSync } from "node:fs";
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
  /** "mapped": the RAM is a file of its own that restores map (mapped-ram.ts); else it is in the stream. */
  ramLayout?: "mapped";
  /** What the saved guest's backdoor shell holds (guest-restore-prep.ts restorePrep().key): its
   *  restores skip the shell's setup and use what the prep opened. */
  shellPrep?: string;
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
  /** The guest's RAM, for mapped-RAM shapes (mapped-ram.ts); `file` then holds the devices' state only. */
  readonly ramFile: string;
  private readonly onRelease: Array<() => void> = [];

  constructor(
    readonly dir: string,
    readonly key: string,
    readonly hasDisk = false,
    readonly mappedRam = false,
  ) {
    this.file = join(dir, `${key}.zst`);
    this.lock = join(dir, `${key}.lock`);
    this.diskFile = diskFileOf(this.file);
    this.ramFile = ramFileOf(this.file);
  }

  static forShape(shape: SnapshotShape): SnapshotSlot {
    return new SnapshotSlot(snapshotDirOf(shape.kernel), snapshotKey(shape), shape.disk !== undefined, shape.ramLayout === "mapped");
  }

  get partialRamFile(): string {
    return `${this.ramFile}.partial-${process.pid}`;
  }

  /** Run `fn` when the claim is released (the saver's RAM file goes with it). */
  whenReleased(fn: () => void): void {
    this.onRelease.push(fn);
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
    if (this.mappedRam) {
      const want = readRecord(this.sizeFile)?.ram?.bytes;
      let ram: number | undefined;
      try {
        ram = statSync(this.ramFile).size;
      } catch {
        return { damaged: "its RAM file is missing" };
      }
      if (ram !== want) return { damaged: `its RAM file has ${ram} bytes, ${want ? `${want} were saved` : "its size record is missing"}` };
    }
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

  /**
   * Move a completely written snapshot into place, with its size and digest beside it.
   * `ramSha256`: the digest of the RAM file (partialRamFile) as it was copied, for mapped-RAM shapes.
   */
  async commit(ramSha256?: string): Promise<void> {
    const size = statSync(this.partialFile).size;
    const sha256 = await sha256File(this.partialFile);
    const ram = this.mappedRam ? { bytes: statSync(this.partialRamFile).size, sha256: ramSha256 ?? (await sha256File(this.partialRamFile)) } : undefined;
    writeFileSync(this.sizeFile, JSON.stringify({ bytes: size, qemu: qemuBinaryIdentity(), sha256, ...(ram ? { ram } : {}) } satisfies SnapshotRecord));
    // The disk and RAM first: the snapshot file appearing is what makes the slot usable.
    if (this.hasDisk) await rename(this.partialDiskFile, this.diskFile);
    if (ram) {
      await rename(this.partialRamFile, this.ramFile);
      writeRamStamp(this.ramFile, ram.sha256);
    }
    await rename(this.partialFile, this.file);
  }

  /**
   * Whether the snapshot's bytes are the ones saved: why not, or undefined when they are. Run
   * beside the restore: a corrupt stream of the right size loads into QEMU without an error,
   * its guest's memory garbage. The state stream is read whole every time (its sha256, a few
   * ms for the devices' state). A mapped RAM file (hundreds of MiB) is read whole only when it
   * is not the file that was last found whole: see ramUnchanged().
   */
  async verify(): Promise<string | undefined> {
    const record = readRecord(this.sizeFile);
    if (!record?.sha256) return "its digest record is missing";
    const actual = await sha256File(this.file).catch((e: Error) => `unreadable: ${e.message}`);
    if (actual !== record.sha256) return actual.startsWith("unreadable") ? actual : "its bytes differ from the saved ones (sha256)";
    if (!this.mappedRam) return undefined;
    if (!record.ram?.sha256) return "its RAM digest record is missing";
    if (ramUnchanged(this.ramFile, record.ram.sha256)) return undefined;
    const ram = await sha256File(this.ramFile).catch((e: Error) => `unreadable: ${e.message}`);
    if (ram !== record.ram.sha256) return ram.startsWith("unreadable") ? `its RAM file is ${ram}` : "its RAM file's bytes differ from the saved ones (sha256)";
    writeRamStamp(this.ramFile, ram);
    return undefined;
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
    for (const fn of this.onRelease.splice(0)) fn();
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
    for (const f of partsOf(this.file)) {
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
  /** The mapped RAM file (mapped-ram.ts): its size and digest. */
  ram?: { bytes: number; sha256: string };
}

const recordFileOf = (file: string) => `${file}.json`;
const diskFileOf = (file: string) => file.replace(/\.zst$/, ".disk.qcow2");
const ramFileOf = (file: string) => file.replace(/\.zst$/, ".ram");
const stampFileOf = (ramFile: string) => `${ramFile}.whole`;

/**
 * What a RAM file was when its whole digest last matched the record: its inode and the times
 * the kernel sets on every change (mtime on every write, ctime on every write, truncation,
 * rename, chmod or utimes; nobody but root can set ctime back). Same inode, size, mtime and
 * ctime to the nanosecond: nothing has written to the file since it was read whole.
 */
interface RamStamp {
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  sha256: string;
}

function ramStampOf(file: string, sha256: string): RamStamp {
  const s = statSync(file, { bigint: true });
  return { dev: String(s.dev), ino: String(s.ino), size: String(s.size), mtimeNs: String(s.mtimeNs), ctimeNs: String(s.ctimeNs), sha256 };
}

function writeRamStamp(file: string, sha256: string): void {
  const stamp = stampFileOf(file);
  const tmp = `${stamp}.partial-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(ramStampOf(file, sha256)));
  renameSync(tmp, stamp);
}

/** Whether `file` is still the file whose digest was found to be `sha256` (see RamStamp). */
function ramUnchanged(file: string, sha256: string): boolean {
  try {
    const was = JSON.parse(readFileSync(stampFileOf(file), "utf8")) as RamStamp;
    const now = ramStampOf(file, sha256);
    return (Object.keys(now) as (keyof RamStamp)[]).every((k) => was[k] === now[k]);
  } catch {
    return false;
  }
}

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

/** Every file of the snapshot whose state stream is `file`. */
const partsOf = (file: string) => [file, recordFileOf(file), diskFileOf(file), ramFileOf(file), stampFileOf(ramFileOf(file))];

export interface CachedSnapshot {
  file: string;
  /** Disk usage of all its files. */
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
    if (!s) continue;
    // On disk: a mapped RAM file is sparse (its zero blocks are holes).
    let bytes = 0;
    for (const part of partsOf(file)) bytes += ((await stat(part).catch(() => undefined))?.blocks ?? 0) * 512;
    out.push({ file, bytes, lastUsedMs: s.mtimeMs, otherQemu: readRecord(recordFileOf(file))?.qemu !== qemuBinaryIdentity() });
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
    for (const part of partsOf(s.file)) await rm(part, { force: true });
    removed.push(s);
  }
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    const m = /\.partial-(\d+)$/.exec(n);
    if (m && !isAlive(Number(m[1]))) await rm(join(dir, n), { force: true });
  }
  return removed;
}
