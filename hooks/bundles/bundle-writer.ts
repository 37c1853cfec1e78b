import { chmodSync, existsSync, lstatSync, readdirSync } from "node:fs";
import { copyFile, cp, mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { compressBaseImage } from "../../vm/qemu/saved-disk.ts";
import { hostname, userInfo } from "node:os";
import type { BaseMachine } from "../../vm/machine.ts";
import type { QemuMachine } from "../../vm/qemu/qemu-machine.ts";
import { sha256File } from "../../vm/file-digest.ts";
import { haltpointVersion, qemuVersion } from "../../vm/host-facts.ts";
import type { SerializedError } from "../../common/events.ts";
import { signBundle } from "./bundle-signature.ts";
import { treeDigest } from "./bundle-tree.ts";
import { BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_FILE, type BundleFile, type BundleMachine, type BundleManifest } from "./bundle-format.ts";
import { bestEffort } from "../../common/teardown.ts";

/** What the worker knows about the halted test, for its bundle. */
export interface BundleSubject {
  test: { name: string; file: string; run: number; key: string };
  kind: "failure" | "breakpoint";
  error?: SerializedError;
  sshBackdoor: boolean;
  accel?: "kvm" | "tcg";
  consolePath(machine: string): string | undefined;
  /** The private key file to sign with (--sign-key); else the user's own key (bundle-signature.ts). */
  signKey?: string;
}

export interface SavedBundle {
  dir: string;
  bytes: number;
  ms: number;
  /** Machines left out, and why (not running, or holding state outside QEMU). */
  skipped: string[];
  /** It has a machine for `haltpoint revive` to restore (a qemu machine, or a local machine's files). */
  revivable: boolean;
  /** Its local machines: their files are in it, their processes are not. */
  localMachines: string[];
  /** The bytes of its disk images (stored once each, shared by the machines on them). */
  imageBytes: number;
}

/** Make every file and directory under `dir` owner-only (a bundle holds guest memory). */
function makePrivate(dir: string): void {
  chmodSync(dir, 0o700);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isSymbolicLink()) continue;
    if (e.isDirectory()) makePrivate(p);
    else chmodSync(p, 0o600);
  }
}

/**
 * Save the halted test's machines into a new bundle directory `dir` (hooks/bundles/bundle-format.ts):
 * written to `<dir>.partial` and renamed, so a bundle that exists is whole. Frozen machines
 * stay frozen; running ones are frozen for the save and thawed after it.
 */
export async function saveBundle(dir: string, machines: BaseMachine[], s: BundleSubject): Promise<SavedBundle> {
  const t0 = performance.now();
  if (existsSync(dir)) throw new Error(`${dir} already exists`);
  const tmp = `${dir}.partial`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true, mode: 0o700 });
  // One moment for every machine: those thawed in the console (or by an SSH session) are
  // frozen for the save, and run again after it.
  const thawAfter = machines.filter((m) => m.state === "running");
  for (const m of thawAfter) await m.freeze();
  try {
    const boot = new Map<string, BundleFile>();
    const carry = async (src: string, kind: "kernel" | "initrd"): Promise<BundleFile> => {
      const known = boot.get(src);
      if (known) return known;
      const sha256 = await sha256File(src);
      const path = `boot/${sha256.slice(0, 16)}.${kind}`;
      await mkdir(join(tmp, "boot"), { recursive: true, mode: 0o700 });
      await copyFile(src, join(tmp, path));
      const f = { path, bytes: (await stat(src)).size, sha256 };
      boot.set(src, f);
      return f;
    };
    // A disk's image, once per image however many machines are on it (saved-disk.ts).
    const images = new Map<string, BundleFile>();
    const carryImage = async (src: string, format: string, log: (msg: string) => void): Promise<BundleFile> => {
      const known = images.get(src);
      if (known) return known;
      await mkdir(join(tmp, "images"), { recursive: true, mode: 0o700 });
      const made = join(tmp, "images", `${images.size}.new`);
      const how = await compressBaseImage(src, format, made);
      if (how.cacheProblem) log(how.cacheProblem);
      const sha256 = await sha256File(made);
      const path = `images/${sha256.slice(0, 16)}.qcow2`;
      await rename(made, join(tmp, path));
      const f = { path, bytes: (await stat(join(tmp, path))).size, sha256 };
      images.set(src, f);
      return f;
    };
    const out: BundleMachine[] = [];
    const skipped: string[] = [];
    for (const m of machines) {
      const own = join(tmp, m.name);
      await mkdir(own, { mode: 0o700 });
      const log = s.consolePath(m.name);
      const console = log && existsSync(log) ? `${m.name}/console.log` : undefined;
      if (console) await copyFile(log!, join(tmp, console));
      if (m.backend === "qemu") {
        const q = m as QemuMachine;
        if (m.state !== "frozen") {
          skipped.push(`${m.name} (${m.state === "created" ? "not started" : m.state})`);
          continue;
        }
        const why = q.unsaveableBecause;
        if (why) {
          skipped.push(`${m.name} (${why})`);
          continue;
        }
        const shape = q.savedShape();
        if ("unsaveable" in shape) {
          skipped.push(`${m.name} (${shape.unsaveable})`);
          continue;
        }
        const chain = await q.savedDisk();
        if (chain && "unsaveable" in chain) {
          skipped.push(`${m.name} (${chain.unsaveable})`);
          continue;
        }
        // The disk before the memory: a completed migration hands the disk over (QEMU makes it inactive).
        let disk: { writes: BundleFile; image: string } | undefined;
        if (chain) {
          const image = await carryImage(chain.base, chain.baseFormat, (msg) => m.log(msg));
          const writesPath = `${m.name}/disk.qcow2`;
          await q.saveDisk(chain, join(tmp, writesPath), posix.relative(m.name, image.path));
          disk = { writes: { path: writesPath, bytes: (await stat(join(tmp, writesPath))).size, sha256: await sha256File(join(tmp, writesPath)) }, image: image.path };
        }
        const statePath = `${m.name}/state.zst`;
        await q.saveState(join(tmp, statePath));
        const state = { path: statePath, bytes: (await stat(join(tmp, statePath))).size, sha256: await sha256File(join(tmp, statePath)) };
        out.push({
          name: m.name,
          backend: "qemu",
          ...shape.params,
          ...(shape.kernel ? { kernel: await carry(shape.kernel, "kernel") } : {}),
          ...(disk ? { disk } : {}),
          state,
          ...(shape.initrd ? { initrd: await carry(shape.initrd, "initrd") } : {}),
          ...(console ? { console } : {}),
        });
      } else {
        const src = (m as BaseMachine & { dir?: string }).dir;
        let files: BundleFile | undefined;
        if (src && existsSync(src)) {
          const path = `${m.name}/files`;
          // Sockets and FIFOs cannot be copied (nor read back): regular files, dirs and links only.
          await cp(src, join(tmp, path), {
            recursive: true,
            verbatimSymlinks: true,
            filter: (p) => {
              const st = lstatSync(p);
              return st.isFile() || st.isDirectory() || st.isSymbolicLink();
            },
          });
          files = { path, ...(await treeDigest(join(tmp, path))) };
        }
        out.push({ name: m.name, backend: "local", ...(files ? { files } : {}), ...(console ? { console } : {}) });
      }
    }
    const manifest: BundleManifest = {
      format: BUNDLE_FORMAT,
      version: BUNDLE_VERSION,
      savedAt: new Date().toISOString(),
      origin: { host: hostname(), user: userName() },
      haltpoint: haltpointVersion(),
      qemu: out.some((m) => m.backend === "qemu") ? await qemuVersion() : null,
      ...(s.accel ? { accel: s.accel } : {}),
      test: s.test,
      kind: s.kind,
      ...(s.error ? { error: s.error } : {}),
      sshBackdoor: s.sshBackdoor,
      machines: out,
      ...(images.size ? { images: [...images.values()] } : {}),
      ...(skipped.length ? { notSaved: skipped } : {}),
    };
    await writeFile(join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
    signBundle(tmp, s.signKey);
    makePrivate(tmp);
    await rename(tmp, dir);
    const imageBytes = [...images.values()].reduce((n, f) => n + f.bytes, 0);
    return { dir, bytes: await sizeOf(dir), ms: performance.now() - t0, skipped, revivable: out.length > 0, imageBytes, localMachines: out.filter((m) => m.backend === "local").map((m) => m.name) };
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    for (const m of thawAfter) await bestEffort((msg) => m.log(msg), "thawing it after saving the bundle", m.thaw());
  }
}

function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? "?"}`;
  }
}

async function sizeOf(dir: string): Promise<number> {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += await sizeOf(p);
    else if (e.isFile()) n += (await stat(p)).size;
  }
  return n;
}
