// The breakpoint bundle format: a halted test written to one directory, so that it can be
// copied (a CI artifact), and revived later, elsewhere, by `haltpoint revive`. Layout:
//
//   bundle.json                 this manifest (BundleManifest)
//   boot/<sha256>.kernel|initrd the kernels and initrds the qemu machines booted (one copy each)
//   <machine>/state.zst         a qemu machine's RAM and devices (QEMU migration stream, zstd)
//   <machine>/disk.qcow2        a qemu machine's disk writes since its image (compressed qcow2
//                               overlay whose header names ../images/<sha256>.qcow2)
//   images/<sha256>.qcow2       the images below those overlays, one copy each however many
//                               machines use it (zstd-compressed qcow2, no backing file)
//   <machine>/console.log       its console up to the halt
//   <machine>/files/            a local machine's directory (revived as a sandbox with these files;
//                               its size and tree digest in the manifest: bundle-tree.ts)
//
// Every path in the manifest is relative to the bundle; every file it names has its size and
// sha256, checked before anything is started. A bundle holds guest memory (keys, tokens):
// the directory is 0700 and its files 0600.

import { lstatSync, readFileSync, realpathSync } from "node:fs";
import { join, posix, sep } from "node:path";
import { qcow2Refusal } from "../../vm/qemu/qcow2-header.ts";
import type { SerializedError } from "../../common/events.ts";
import { SAVED_LIMITS, type SavedQemuParams } from "../../vm/qemu/saved-machine.ts";

export const BUNDLE_FORMAT = "haltpoint-breakpoint-bundle";
/**
 * Bumped when what a bundle holds or how it is revived changes: older bundles are refused.
 * 2: machines hold the argv builder's typed parameters, no QEMU argv; the origin (host, user).
 * 3: qemu machines' disks (their writes, over images stored once), a kernel only when booted with one.
 */
export const BUNDLE_VERSION = 3;
export const MANIFEST_FILE = "bundle.json";
/** A manifest larger than this is not read (it is a few KiB). */
export const MAX_MANIFEST_BYTES = 1 << 20;

/** A file inside the bundle. */
export interface BundleFile {
  /** Relative to the bundle directory. */
  path: string;
  bytes: number;
  sha256: string;
}

/** A qemu machine: its files, and what haltpoint's argv builder took (vm/qemu/saved-machine.ts). */
export interface BundleQemuMachine extends SavedQemuParams {
  name: string;
  backend: "qemu";
  /** Absent for a machine that boots from its disk. */
  kernel?: BundleFile;
  /** Its disk: the writes since its image, and the image (the path of one of the manifest's `images`). */
  disk?: { writes: BundleFile; image: string };
  initrd?: BundleFile;
  state: BundleFile;
  console?: string;
}

export interface BundleLocalMachine {
  name: string;
  backend: "local";
  /** Its directory as it was at the halt (a copy), when it had one: `bytes` and `sha256` are its tree's (bundle-tree.ts). */
  files?: BundleFile;
  console?: string;
}

export type BundleMachine = BundleQemuMachine | BundleLocalMachine;

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: typeof BUNDLE_VERSION;
  /** ISO time of the save. */
  savedAt: string;
  /** Where it was saved: printed by revive before anything runs. */
  origin: { host: string; user: string };
  haltpoint: string;
  /** `qemu-system-x86_64 --version`'s first line on the saving host: a revive needs the same. */
  qemu: string | null;
  accel?: "kvm" | "tcg";
  test: { name: string; file: string; run: number; key: string };
  /** Why it halted: a failure (with its error) or debug.breakpoint(). */
  kind: "failure" | "breakpoint";
  error?: SerializedError;
  /** The run had SSH backdoor sockets: the revived breakpoint gets them too. */
  sshBackdoor: boolean;
  machines: BundleMachine[];
  /** The images below the machines' disks, each once (zstd-compressed qcow2 with no backing file). */
  images?: BundleFile[];
  /** Machines of the test that are not in the bundle, each with why (not running; state outside QEMU). */
  notSaved?: string[];
}

export class BundleError extends Error {
  override name = "BundleError";
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Every key of `v` is one of `known`: a field this haltpoint cannot map back is refused, never ignored. */
function onlyKnown(v: Record<string, unknown>, known: readonly string[], where: string): void {
  const extra = Object.keys(v).find((k) => !known.includes(k));
  if (extra !== undefined) throw new BundleError(`${where ? `${where}.` : ""}${extra}: not a field of a version ${BUNDLE_VERSION} bundle (revive takes no QEMU options from a bundle)`);
}

/** Control characters (newlines, terminal escapes): a manifest's text is printed and logged. */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** A printable one-line string of at most `max` bytes (no control characters: it is printed and logged). */
function text(v: unknown, what: string, max = 4096): string {
  if (typeof v !== "string" || Buffer.byteLength(v) > max || hasControl(v)) throw new BundleError(`${what}: must be one line of text of at most ${max} bytes`);
  return v;
}

function int(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new BundleError(`${what}: must be an integer from ${min} to ${max}`);
  return v;
}

/** A relative path that stays inside the bundle, by its words (the files are checked on disk by checkFiles). */
function insidePath(p: unknown, what: string): string {
  if (typeof p !== "string" || !p || p.length > 255 || p.startsWith("/") || p.split("/").some((w) => w === "" || w === "." || w === "..") || hasControl(p) || p.includes("\\")) throw new BundleError(`${what}: not a path inside the bundle: ${JSON.stringify(p)}`);
  return p;
}

const MAX_FILE_BYTES = 64 * 2 ** 30;

function bundleFile(v: unknown, what: string): BundleFile {
  if (!isObject(v)) throw new BundleError(`${what}: missing`);
  onlyKnown(v, ["path", "bytes", "sha256"], what);
  if (typeof v.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(v.sha256)) throw new BundleError(`${what}: needs "bytes" and a sha256`);
  return { path: insidePath(v.path, what), bytes: int(v.bytes, `${what}.bytes`, 0, MAX_FILE_BYTES), sha256: v.sha256 };
}

/** A machine name as haltpoint accepts it in a test (vm/node-options.ts): it becomes a directory name. */
const MACHINE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;

const QEMU_KEYS = ["name", "backend", "memoryMiB", "cores", "vlans", "shellPort", "append", "identityDevices", "allowReboot", "kernel", "initrd", "disk", "state", "console"] as const;
const LOCAL_KEYS = ["name", "backend", "files", "console"] as const;
const TOP_KEYS = ["format", "version", "savedAt", "origin", "haltpoint", "qemu", "accel", "test", "kind", "error", "sshBackdoor", "machines", "images", "notSaved"] as const;

function qemuDisk(v: unknown, where: string, images: Set<string>): { writes: BundleFile; image: string } {
  if (!isObject(v)) throw new BundleError(`${where}: must be an object`);
  onlyKnown(v, ["writes", "image"], where);
  const image = insidePath(v.image, `${where}.image`);
  if (!images.has(image)) throw new BundleError(`${where}.image: ${image} is not one of the bundle's images`);
  return { writes: bundleFile(v.writes, `${where}.writes`), image };
}

function qemuMachine(m: Record<string, unknown>, where: string, images: Set<string>): BundleQemuMachine {
  onlyKnown(m, QEMU_KEYS, where);
  if (m.kernel === undefined && m.disk === undefined) throw new BundleError(`${where}: needs a kernel or a disk`);
  const L = SAVED_LIMITS;
  if (!Array.isArray(m.vlans) || m.vlans.length > L.maxVlans) throw new BundleError(`${where}.vlans: must be a list of at most ${L.maxVlans} vlans`);
  const vlans = m.vlans.map((v, j) => int(v, `${where}.vlans[${j}]`, 1, 255));
  if (new Set(vlans).size !== vlans.length) throw new BundleError(`${where}.vlans: must be distinct`);
  if (m.shellPort !== "named" && m.shellPort !== "console") throw new BundleError(`${where}.shellPort: must be "named" or "console"`);
  if (typeof m.identityDevices !== "boolean") throw new BundleError(`${where}.identityDevices: must be true or false`);
  if (typeof m.allowReboot !== "boolean") throw new BundleError(`${where}.allowReboot: must be true or false`);
  return {
    name: m.name as string,
    backend: "qemu",
    memoryMiB: int(m.memoryMiB, `${where}.memoryMiB`, 16, L.maxMemoryMiB),
    cores: int(m.cores, `${where}.cores`, 1, L.maxCores),
    vlans,
    shellPort: m.shellPort,
    ...(m.append !== undefined ? { append: text(m.append, `${where}.append`, L.maxAppendBytes) } : {}),
    identityDevices: m.identityDevices,
    allowReboot: m.allowReboot,
    ...(m.kernel !== undefined ? { kernel: bundleFile(m.kernel, `${where}.kernel`) } : {}),
    ...(m.disk !== undefined ? { disk: qemuDisk(m.disk, `${where}.disk`, images) } : {}),
    ...(m.initrd !== undefined ? { initrd: bundleFile(m.initrd, `${where}.initrd`) } : {}),
    state: bundleFile(m.state, `${where}.state`),
    ...(m.console !== undefined ? { console: insidePath(m.console, `${where}.console`) } : {}),
  };
}

/** Check a parsed manifest's shape; one line naming the first field that is wrong. */
export function validateManifest(v: unknown): BundleManifest {
  if (!isObject(v) || v.format !== BUNDLE_FORMAT) throw new BundleError(`not a haltpoint breakpoint bundle (no "format": "${BUNDLE_FORMAT}")`);
  if (v.version !== BUNDLE_VERSION) throw new BundleError(`bundle format version ${JSON.stringify(v.version)}, this haltpoint reads version ${BUNDLE_VERSION} only: save it again with this haltpoint`);
  onlyKnown(v, TOP_KEYS, "");
  const test = v.test;
  if (!isObject(test)) throw new BundleError("test: needs name, key, run and file");
  onlyKnown(test, ["name", "file", "run", "key"], "test");
  const t = { name: text(test.name, "test.name", 256), file: text(test.file, "test.file"), run: int(test.run, "test.run", 1, 2 ** 31), key: text(test.key, "test.key", 300) };
  const origin = v.origin;
  if (!isObject(origin)) throw new BundleError("origin: needs host and user");
  onlyKnown(origin, ["host", "user"], "origin");
  const o = { host: text(origin.host, "origin.host", 256), user: text(origin.user, "origin.user", 256) };
  if (typeof v.savedAt !== "string" || Number.isNaN(Date.parse(v.savedAt))) throw new BundleError("savedAt: must be a time");
  text(v.haltpoint, "haltpoint", 64);
  if (v.qemu !== null) text(v.qemu, "qemu", 256);
  if (v.accel !== undefined && v.accel !== "kvm" && v.accel !== "tcg") throw new BundleError('accel: must be "kvm" or "tcg"');
  if (typeof v.sshBackdoor !== "boolean") throw new BundleError("sshBackdoor: must be true or false");
  if (v.kind !== "failure" && v.kind !== "breakpoint") throw new BundleError('kind: must be "failure" or "breakpoint"');
  let error: SerializedError | undefined;
  if (v.error !== undefined) {
    const e = v.error;
    if (!isObject(e) || typeof e.name !== "string" || typeof e.message !== "string" || (e.stack !== undefined && typeof e.stack !== "string")) throw new BundleError("error: needs a name and a message");
    onlyKnown(e, ["name", "message", "stack"], "error");
    if (e.message.length + (e.stack?.length ?? 0) > 256 * 1024) throw new BundleError("error: over 256 KiB");
    error = { name: text(e.name, "error.name", 256), message: e.message, ...(e.stack !== undefined ? { stack: e.stack } : {}) };
  }
  if (v.images !== undefined && !(Array.isArray(v.images) && v.images.length <= 64)) throw new BundleError("images: must be a list of at most 64 images");
  const images = (v.images ?? []).map((f, j) => bundleFile(f, `images[${j}]`));
  const imagePaths = new Set(images.map((f) => f.path));
  if (imagePaths.size !== images.length) throw new BundleError("images: an image is listed twice");
  if (!Array.isArray(v.machines) || v.machines.length > 64) throw new BundleError("machines: must be a list of at most 64 machines");
  const names = new Set<string>();
  const machines = v.machines.map((m, i): BundleMachine => {
    const where = `machines[${i}]`;
    if (!isObject(m) || typeof m.name !== "string" || !MACHINE_NAME.test(m.name)) throw new BundleError(`${where}.name: must be a machine name (a letter, then letters, digits, _ or -)`);
    if (names.has(m.name)) throw new BundleError(`${where}.name: ${m.name} twice`);
    names.add(m.name);
    if (m.backend === "qemu") return qemuMachine(m, where, imagePaths);
    if (m.backend === "local") {
      onlyKnown(m, LOCAL_KEYS, where);
      return {
        name: m.name,
        backend: "local",
        ...(m.files !== undefined ? { files: bundleFile(m.files, `${where}.files`) } : {}),
        ...(m.console !== undefined ? { console: insidePath(m.console, `${where}.console`) } : {}),
      };
    }
    throw new BundleError(`${where}.backend: ${JSON.stringify(m.backend)} is not a backend`);
  });
  if (v.notSaved !== undefined && !(Array.isArray(v.notSaved) && v.notSaved.length <= 64 && v.notSaved.every((x, j) => text(x, `notSaved[${j}]`, 1024)))) throw new BundleError("notSaved: must be a list of strings");
  return {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    savedAt: v.savedAt,
    origin: o,
    haltpoint: v.haltpoint as string,
    qemu: v.qemu as string | null,
    ...(v.accel !== undefined ? { accel: v.accel as "kvm" | "tcg" } : {}),
    test: t,
    kind: v.kind,
    ...(error ? { error } : {}),
    sshBackdoor: v.sshBackdoor,
    machines,
    ...(v.images !== undefined ? { images } : {}),
    ...(v.notSaved !== undefined ? { notSaved: v.notSaved as string[] } : {}),
  };
}

/**
 * Where `rel` is on disk, if it is a regular file inside the bundle reached through real
 * directories only: no component may be a symbolic link (a link could point anywhere on
 * the host), and the result stays under the bundle's real path. `dir` is a real path.
 */
export function fileInBundle(dir: string, rel: string, what: string, want: "regular file" | "directory" = "regular file"): { path: string; bytes: number } {
  let at = dir;
  const words = rel.split("/");
  for (const [i, w] of words.entries()) {
    at = join(at, w);
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(at);
    } catch {
      throw new BundleError(`${what} (${rel}) is missing`);
    }
    if (st.isSymbolicLink()) throw new BundleError(`${what} (${rel}) is a symbolic link: a bundle's files must be its own`);
    const last = i === words.length - 1;
    if (last ? (want === "directory" ? !st.isDirectory() : !st.isFile()) : !st.isDirectory()) throw new BundleError(`${what} (${rel}) is not a ${last ? want : "directory path"}`);
    if (last) {
      if (!at.startsWith(dir + sep)) throw new BundleError(`${what} (${rel}) is outside the bundle`);
      return { path: at, bytes: st.size };
    }
  }
  throw new BundleError(`${what}: empty path`);
}

/** Read and check a bundle's manifest. `dir` is the bundle directory; the result's `dir` its real path. */
export function readManifest(dir: string): BundleManifest & { dir: string; raw: Buffer } {
  let real: string;
  try {
    real = realpathSync(dir);
    if (!lstatSync(real).isDirectory()) throw new BundleError("not a directory");
  } catch (e) {
    if (e instanceof BundleError) throw e;
    throw new BundleError("no such directory");
  }
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(join(real, MANIFEST_FILE));
  } catch {
    throw new BundleError(`not a bundle (no ${MANIFEST_FILE} in it)`);
  }
  if (!st.isFile()) throw new BundleError(`${MANIFEST_FILE}: not a regular file`);
  if (st.size > MAX_MANIFEST_BYTES) throw new BundleError(`${MANIFEST_FILE}: ${st.size} bytes, a manifest is at most ${MAX_MANIFEST_BYTES}`);
  const raw = readFileSync(join(real, MANIFEST_FILE));
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString("utf8"));
  } catch (e) {
    throw new BundleError(`${MANIFEST_FILE}: not JSON (${(e as Error).message})`);
  }
  return { ...validateManifest(parsed), dir: real, raw };
}

/** Every file the manifest names, with what it is for. */
export function filesOf(m: BundleManifest): Array<{ what: string; file: BundleFile }> {
  const out: Array<{ what: string; file: BundleFile }> = [];
  for (const f of m.images ?? []) out.push({ what: "a disk image", file: f });
  for (const x of m.machines) {
    if (x.backend !== "qemu") continue;
    out.push({ what: `machine ${x.name}'s saved state`, file: x.state });
    if (x.kernel) out.push({ what: `machine ${x.name}'s kernel`, file: x.kernel });
    if (x.disk) out.push({ what: `machine ${x.name}'s disk writes`, file: x.disk.writes });
    if (x.initrd) out.push({ what: `machine ${x.name}'s initrd`, file: x.initrd });
  }
  return out;
}

/** The first file that is missing, not the bundle's own, or of another size than saved (cheap: before any digest or decompression). */
export function missingOrTruncated(dir: string, m: BundleManifest): string | undefined {
  for (const { what, file } of filesOf(m)) {
    let bytes: number;
    try {
      bytes = fileInBundle(dir, file.path, what).bytes;
    } catch (e) {
      return (e as Error).message;
    }
    if (bytes !== file.bytes) return `${what} (${file.path}) is ${bytes} bytes, ${file.bytes} were saved`;
  }
  for (const x of m.machines) {
    if (x.backend !== "local" || !x.files) continue;
    try {
      fileInBundle(dir, x.files.path, `machine ${x.name}'s files`, "directory");
    } catch (e) {
      return (e as Error).message;
    }
  }
  return undefined;
}

/** Every file's place, size and sha256 against the manifest: why the bundle is damaged, or undefined. */
export async function damageOf(dir: string, m: BundleManifest): Promise<string | undefined> {
  const quick = missingOrTruncated(dir, m);
  if (quick) return quick;
  const { verifyDigest } = await import("../../vm/file-digest.ts");
  // All at once (the reads of one overlap the hashing of another: a Debian image is a few hundred MiB); the first damaged one in order is said.
  const files = filesOf(m);
  const bad = await Promise.all(files.map(({ file }) => verifyDigest(join(dir, file.path), file.sha256)));
  const i = bad.findIndex((b) => b !== undefined);
  if (i >= 0) return `${files[i]!.what} (${files[i]!.file.path}): ${bad[i]}`;
  const { treeDigest } = await import("./bundle-tree.ts");
  for (const x of m.machines) {
    if (x.backend !== "local" || !x.files) continue;
    const what = `machine ${x.name}'s files (${x.files.path})`;
    const tree = await treeDigest(join(dir, x.files.path)).catch((e: Error) => e.message);
    if (typeof tree === "string") return `${what}: ${tree}`;
    if (tree.bytes !== x.files.bytes || tree.sha256 !== x.files.sha256) return `${what}: they differ from the saved ones (sha256 of the tree)`;
  }
  return diskRefusal(dir, m);
}

/** The backing name a machine's disk writes must have in their header: its image, relative to it. */
export function backingNameOf(disk: { writes: BundleFile; image: string }): string {
  return posix.relative(posix.dirname(disk.writes.path), disk.image);
}

/**
 * The qcow2 headers of the bundle's disks (vm/qemu/qcow2-header.ts): an image names no other
 * file, a machine's writes name exactly its image. Checked after the digests (a signed,
 * whole bundle from elsewhere is still a stranger's file) and before QEMU opens any of them.
 */
export function diskRefusal(dir: string, m: BundleManifest): string | undefined {
  for (const f of m.images ?? []) {
    const bad = qcow2Refusal(join(dir, f.path), undefined);
    if (bad) return `a disk image (${f.path}) is refused: ${bad}`;
  }
  for (const x of m.machines) {
    if (x.backend !== "qemu" || !x.disk) continue;
    const bad = qcow2Refusal(join(dir, x.disk.writes.path), backingNameOf(x.disk));
    if (bad) return `machine ${x.name}'s disk writes (${x.disk.writes.path}) are refused: ${bad}`;
  }
  return undefined;
}
