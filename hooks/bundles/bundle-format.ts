// The breakpoint bundle format: a halted test written to one directory, so that it can be
// copied (a CI artifact), and revived later, elsewhere, by `haltpoint revive`. Layout:
//
//   bundle.json                 this manifest (BundleManifest)
//   boot/<sha256>.kernel|initrd the kernels and initrds the qemu machines booted (one copy each)
//   <machine>/state.zst         a qemu machine's RAM and devices (QEMU migration stream, zstd)
//   <machine>/console.log       its console up to the halt
//   <machine>/files/            a local machine's directory (not restorable: kept for reading)
//
// Every path in the manifest is relative to the bundle; every file it names has its size and
// sha256, checked before anything is started. A bundle holds guest memory (keys, tokens):
// the directory is 0700 and its files 0600.

import { existsSync, readFileSync, statSync } from "node:fs";
import { join, normalize } from "node:path";
import type { SerializedError } from "../../common/events.ts";
import type { NodeOptions } from "../../vm/types.ts";

export const BUNDLE_FORMAT = "haltpoint-breakpoint-bundle";
/** Bumped when what a bundle holds or how it is revived changes: older bundles are refused. */
export const BUNDLE_VERSION = 1;
export const MANIFEST_FILE = "bundle.json";

/** A file inside the bundle. */
export interface BundleFile {
  /** Relative to the bundle directory. */
  path: string;
  bytes: number;
  sha256: string;
}

export interface BundleQemuMachine {
  name: string;
  backend: "qemu";
  options: NodeOptions;
  /** QEMU's argv with placeholders for paths (vm/qemu/saved-machine.ts). */
  argv: string[];
  kernel?: BundleFile;
  initrd?: BundleFile;
  state: BundleFile;
  console?: string;
}

export interface BundleLocalMachine {
  name: string;
  backend: "local";
  options: NodeOptions;
  /** Its directory as it was at the halt (a copy), when it had one. */
  files?: string;
  console?: string;
}

export type BundleMachine = BundleQemuMachine | BundleLocalMachine;

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: typeof BUNDLE_VERSION;
  /** ISO time of the save. */
  savedAt: string;
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
  /** Machines of the test that are not in the bundle, each with why (not running; state outside QEMU). */
  notSaved?: string[];
}

export class BundleError extends Error {
  override name = "BundleError";
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A relative path that stays inside the bundle (a manifest from elsewhere is not trusted). */
function insidePath(p: unknown, what: string): string {
  if (typeof p !== "string" || !p || p.startsWith("/") || normalize(p).split("/").includes("..")) throw new BundleError(`${what}: not a path inside the bundle: ${JSON.stringify(p)}`);
  return p;
}

function bundleFile(v: unknown, what: string): BundleFile {
  if (!isObject(v)) throw new BundleError(`${what}: missing`);
  if (typeof v.bytes !== "number" || typeof v.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(v.sha256)) throw new BundleError(`${what}: needs "bytes" and a sha256`);
  return { path: insidePath(v.path, what), bytes: v.bytes, sha256: v.sha256 };
}

/** Check a parsed manifest's shape; one line naming the first field that is wrong. */
export function validateManifest(v: unknown): BundleManifest {
  if (!isObject(v) || v.format !== BUNDLE_FORMAT) throw new BundleError(`not a haltpoint breakpoint bundle (no "format": "${BUNDLE_FORMAT}")`);
  if (v.version !== BUNDLE_VERSION) throw new BundleError(`bundle format version ${JSON.stringify(v.version)}, this haltpoint reads version ${BUNDLE_VERSION}`);
  const test = v.test;
  if (!isObject(test) || typeof test.name !== "string" || typeof test.key !== "string" || typeof test.run !== "number" || typeof test.file !== "string") throw new BundleError("test: needs name, key, run and file");
  if (v.kind !== "failure" && v.kind !== "breakpoint") throw new BundleError('kind: must be "failure" or "breakpoint"');
  if (!Array.isArray(v.machines)) throw new BundleError("machines: must be a list");
  const machines = v.machines.map((m, i): BundleMachine => {
    const where = `machines[${i}]`;
    if (!isObject(m) || typeof m.name !== "string" || !isObject(m.options)) throw new BundleError(`${where}: needs a name and options`);
    if (m.backend === "qemu") {
      if (!Array.isArray(m.argv) || !m.argv.every((a) => typeof a === "string")) throw new BundleError(`${where}.argv: must be a list of strings`);
      return {
        name: m.name,
        backend: "qemu",
        options: m.options as NodeOptions,
        argv: m.argv as string[],
        state: bundleFile(m.state, `${where}.state`),
        ...(m.kernel !== undefined ? { kernel: bundleFile(m.kernel, `${where}.kernel`) } : {}),
        ...(m.initrd !== undefined ? { initrd: bundleFile(m.initrd, `${where}.initrd`) } : {}),
        ...(m.console !== undefined ? { console: insidePath(m.console, `${where}.console`) } : {}),
      };
    }
    if (m.backend === "local") {
      return {
        name: m.name,
        backend: "local",
        options: m.options as NodeOptions,
        ...(m.files !== undefined ? { files: insidePath(m.files, `${where}.files`) } : {}),
        ...(m.console !== undefined ? { console: insidePath(m.console, `${where}.console`) } : {}),
      };
    }
    throw new BundleError(`${where}.backend: ${JSON.stringify(m.backend)} is not a backend`);
  });
  if (v.notSaved !== undefined && !(Array.isArray(v.notSaved) && v.notSaved.every((x) => typeof x === "string"))) throw new BundleError("notSaved: must be a list of strings");
  return { ...(v as unknown as BundleManifest), machines };
}

/** Read and check a bundle's manifest. `dir` is the bundle directory. */
export function readManifest(dir: string): BundleManifest {
  const file = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new BundleError(existsSync(dir) ? `not a bundle (no ${MANIFEST_FILE} in it)` : "no such directory");
    throw new BundleError(`${MANIFEST_FILE}: ${code ?? (e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new BundleError(`${MANIFEST_FILE}: not JSON (${(e as Error).message})`);
  }
  return validateManifest(parsed);
}

/** Every file the manifest names, with what it is for. */
export function filesOf(m: BundleManifest): Array<{ what: string; file: BundleFile }> {
  const out: Array<{ what: string; file: BundleFile }> = [];
  for (const x of m.machines) {
    if (x.backend !== "qemu") continue;
    out.push({ what: `machine ${x.name}'s saved state`, file: x.state });
    if (x.kernel) out.push({ what: `machine ${x.name}'s kernel`, file: x.kernel });
    if (x.initrd) out.push({ what: `machine ${x.name}'s initrd`, file: x.initrd });
  }
  return out;
}

/** The first file that is missing or of the wrong size (cheap; digests are checked as it loads). */
export function missingOrTruncated(dir: string, m: BundleManifest): string | undefined {
  for (const { what, file } of filesOf(m)) {
    let bytes: number;
    try {
      bytes = statSync(join(dir, file.path)).size;
    } catch {
      return `${what} (${file.path}) is missing`;
    }
    if (bytes !== file.bytes) return `${what} (${file.path}) is ${bytes} bytes, ${file.bytes} were saved`;
  }
  return undefined;
}

/** Every file's size and sha256 against the manifest: why the bundle is damaged, or undefined. */
export async function damageOf(dir: string, m: BundleManifest): Promise<string | undefined> {
  const quick = missingOrTruncated(dir, m);
  if (quick) return quick;
  const { verifyDigest } = await import("../../vm/file-digest.ts");
  for (const { what, file } of filesOf(m)) {
    const bad = await verifyDigest(join(dir, file.path), file.sha256);
    if (bad) return `${what} (${file.path}): ${bad}`;
  }
  return undefined;
}
