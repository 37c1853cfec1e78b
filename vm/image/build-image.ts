// haltpoint's default guest image: Debian's generic kernel (it has CONFIG_VMGENID, for snapshot boots) plus an initramfs holding
// busybox, bash, dropbear and guest-init.sh, cached per set of inputs.

import { createHash } from "node:crypto";
import { withGuestIdentity } from "./guest-identity.ts";
import { access, chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { downloadPackages, ImageBuildError, resolveGuestPackages, type AptOptions, type ResolvedPackage } from "./apt-packages.ts";
import { resolvedWhileAptUnchanged } from "./apt-resolve-cache.ts";
import { GUEST_MODULES, installGuestModules } from "./guest-modules.ts";
import { packInitramfs, requireCpio } from "./initramfs.ts";
import { packageFile as shippedFile } from "../../package-root.ts";
import { markUsed, pruneImages, UNUSED_IMAGE_DAYS } from "./image-cache.ts";
import { removeScratchDir } from "./scratch-dir.ts";

export { DEFAULT_APPEND, guestAppend, guestKernelParams, type GuestParams } from "./guest-params.ts";
export { ImageBuildError } from "./apt-packages.ts";

export interface GuestImage {
  /** The image's directory, `<cache root>/<key>`. */
  dir: string;
  kernel: string;
  initrd: string;
  /** Hash of every input: package names and versions, host libraries, guest-init.sh, builder version. */
  key: string;
  /** True when the cache already held this image and nothing was built. */
  reused: boolean;
  /** The guest kernel's release (`uname -r` inside the guest). */
  kernelVersion: string;
}

export interface BuildImageOptions extends AptOptions {
  /** Cache root; default defaultImageCacheRoot(). */
  cacheDir?: string;
  log?: (line: string) => void;
  /** Rebuild even if the cache holds this image (the old one is replaced atomically). */
  force?: boolean;
}

/** Bump when the builder changes what it puts into an image: old cache entries stop matching. */
export const IMAGE_BUILDER_VERSION = 1;

const KERNEL_FILE = "vmlinuz";
const INITRD_FILE = "initrd.img";
const MANIFEST_FILE = "manifest.json";
const INIT_SCRIPT = shippedFile("vm/image/guest-init.sh");

export function defaultImageCacheRoot(): string {
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(cache, "haltpoint", "images");
}

const MULTIARCH = "lib/x86_64-linux-gnu";

/** Libraries dropbear needs that are taken from the host, with the Debian package that has them. */
const HOST_LIBS = [
  { guest: `${MULTIARCH}/libz.so.1`, host: [`/${MULTIARCH}/libz.so.1`, `/usr/${MULTIARCH}/libz.so.1`], pkg: "zlib1g" },
  { guest: `${MULTIARCH}/libcrypt.so.1`, host: [`/${MULTIARCH}/libcrypt.so.1`, `/usr/${MULTIARCH}/libcrypt.so.1`], pkg: "libcrypt1" },
  { guest: `${MULTIARCH}/libc.so.6`, host: [`/${MULTIARCH}/libc.so.6`, `/usr/${MULTIARCH}/libc.so.6`], pkg: "libc6" },
  // The path every dynamically linked x86-64 binary names as its interpreter.
  { guest: "lib64/ld-linux-x86-64.so.2", host: ["/lib64/ld-linux-x86-64.so.2", `/${MULTIARCH}/ld-linux-x86-64.so.2`], pkg: "libc6" },
] as const;

/** Files taken from the extracted packages (paths tried as given and with/without usr/). */
const PACKAGE_FILES = [
  { from: "bin/busybox", guest: "bin/busybox", mode: 0o755 },
  { from: "bin/bash-static", guest: "bin/bash", mode: 0o755 },
  { from: "usr/sbin/dropbear", guest: "usr/sbin/dropbear", mode: 0o755 },
  { from: "usr/bin/dropbearkey", guest: "usr/bin/dropbearkey", mode: 0o755 },
  { from: `usr/${MULTIARCH}/libtomcrypt.so.1`, guest: `${MULTIARCH}/libtomcrypt.so.1`, mode: 0o644 },
  { from: `usr/${MULTIARCH}/libtommath.so.1`, guest: `${MULTIARCH}/libtommath.so.1`, mode: 0o644 },
  { from: `usr/${MULTIARCH}/libgmp.so.10`, guest: `${MULTIARCH}/libgmp.so.10`, mode: 0o644 },
] as const;

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function firstExisting(paths: readonly string[]): Promise<string | undefined> {
  for (const p of paths) if (await exists(p)) return p;
  return undefined;
}

async function hostLibs(): Promise<Array<{ guest: string; host: string; sha256: string }>> {
  const libs = [];
  for (const lib of HOST_LIBS) {
    const host = await firstExisting(lib.host);
    if (!host) throw new ImageBuildError(`haltpoint image: host library ${lib.host[0]} not found; install it with \`apt-get install ${lib.pkg}\``);
    const sha256 = createHash("sha256").update(await readFile(host)).digest("hex");
    libs.push({ guest: lib.guest, host, sha256 });
  }
  return libs;
}

interface Manifest {
  key: string;
  kernelVersion: string;
  builder: number;
  packages: ResolvedPackage[];
  modules: string[];
  builtAt: string;
}

async function readManifest(dir: string): Promise<Manifest | undefined> {
  try {
    const m = JSON.parse(await readFile(join(dir, MANIFEST_FILE), "utf8")) as Manifest;
    if (!(await exists(join(dir, KERNEL_FILE))) || !(await exists(join(dir, INITRD_FILE)))) return undefined;
    return m;
  } catch {
    return undefined;
  }
}

function imageAt(dir: string, key: string, kernelVersion: string, reused: boolean): GuestImage {
  return { dir, kernel: join(dir, KERNEL_FILE), initrd: join(dir, INITRD_FILE), key, reused, kernelVersion };
}

/** "linux-image-6.1.0-57-amd64" → "6.1.0-57-amd64" */
function kernelRelease(kernelPackage: string): string {
  return kernelPackage.replace(/^linux-image-/, "");
}

async function extractDeb(deb: string, into: string): Promise<void> {
  const r = await execa("dpkg-deb", ["-x", deb, into], { reject: false });
  if (r.exitCode !== 0) {
    const why = r.code === "ENOENT" ? "dpkg-deb not found (apt-get install dpkg)" : r.stderr.trim().split("\n").at(-1);
    throw new ImageBuildError(`haltpoint image: cannot extract ${deb}: ${why}`);
  }
}

async function packageFile(extracted: string, rel: string): Promise<string> {
  const bare = rel.replace(/^usr\//, "");
  const found = await firstExisting([join(extracted, rel), join(extracted, bare), join(extracted, "usr", bare)]);
  if (!found) throw new ImageBuildError(`haltpoint image: ${rel} not found in the downloaded packages (did a Debian package move it?)`);
  return found;
}

/** Lay out the guest's root file system in `root`. */
async function assembleRoot(root: string, extracted: string, kernelVersion: string, libs: Array<{ guest: string; host: string }>, initScript: string, log: (line: string) => void): Promise<string[]> {
  for (const d of ["bin", "sbin", "usr/bin", "usr/sbin", MULTIARCH, "lib64", "lib/modules", "dev", "etc", "proc", "sys", "tmp", "run", "root"]) {
    await mkdir(join(root, d), { recursive: true });
  }
  for (const f of PACKAGE_FILES) {
    const dst = join(root, f.guest);
    await copyFile(await packageFile(extracted, f.from), dst);
    await chmod(dst, f.mode);
  }
  for (const lib of libs) await copyFile(lib.host, join(root, lib.guest)); // follows the host's symlinks
  await symlink("busybox", join(root, "bin/sh"));
  await writeFile(join(root, "init"), initScript, { mode: 0o755 });
  // The kernel opens /dev/console before running /init; mknod needs root, and /init
  // reopens its stdio on devtmpfs' console anyway, so this is best effort.
  await execa("mknod", ["-m", "600", join(root, "dev/console"), "c", "5", "1"], { reject: false });

  const modulesDir = await firstExisting([join(extracted, "lib/modules", kernelVersion), join(extracted, "usr/lib/modules", kernelVersion)]);
  if (!modulesDir) throw new ImageBuildError(`haltpoint image: the kernel package has no modules for ${kernelVersion}`);
  return installGuestModules(modulesDir, join(root, "lib/modules"), log);
}

/** Move a finished image into place; rename(2) is atomic, so readers see all of it or nothing. */
export async function publish(staged: string, dir: string, scratch: string, force: boolean): Promise<boolean> {
  try {
    await rename(staged, dir);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EEXIST" && code !== "ENOTEMPTY") throw e;
    if (!force) return false; // another process published the same image meanwhile
    await rename(dir, join(scratch, "replaced"));
    await rename(staged, dir);
    return true;
  }
}

/** Scratch directories of builds that were killed (a finished build removes its own). */
export async function removeStaleScratch(root: string, log?: (line: string) => void): Promise<void> {
  const hourAgo = Date.now() - 3600_000;
  for (const name of await readdir(root).catch(() => [])) {
    if (!name.startsWith(".build-")) continue;
    const path = join(root, name);
    const st = await stat(path).catch(() => undefined);
    // Housekeeping: a scratch dir that cannot go is not a reason for this build to fail.
    if (st && st.mtimeMs < hourAgo) await removeScratchDir(path).catch((e: Error) => log?.(`could not remove the stale build directory ${path}: ${e.message}`));
  }
}

/** What goes into the image, and the cache key that names it. */
export async function imageInputs(apt: AptOptions = {}) {
  // Kept while apt's state is unchanged (apt-resolve-cache.ts); apt options of their own (tests) ask apt every time.
  const packages = apt.aptArgs?.length ? await resolveGuestPackages(apt) : await resolvedWhileAptUnchanged(join(dirname(defaultImageCacheRoot()), "apt-resolved.json"), () => resolveGuestPackages(apt));
  const kernelVersion = kernelRelease(packages[0]!.name);
  const libs = await hostLibs();
  const initScript = withGuestIdentity(await readFile(INIT_SCRIPT, "utf8"));
  const key = createHash("sha256")
    .update(JSON.stringify({ builder: IMAGE_BUILDER_VERSION, packages, hostLibs: libs.map((l) => [l.guest, l.sha256]), modules: GUEST_MODULES, init: initScript }))
    .digest("hex")
    .slice(0, 16);
  return { key, packages, kernelVersion, libs, initScript };
}

/** Build the default guest image, or return the cached one with the same inputs. */
export async function buildImage(opts: BuildImageOptions = {}): Promise<GuestImage> {
  const root = opts.cacheDir ?? defaultImageCacheRoot();
  const log = opts.log ?? (() => {});
  const apt: AptOptions = { aptArgs: opts.aptArgs };

  log("resolving package versions with apt-cache");
  const { key, packages, kernelVersion, libs, initScript } = await imageInputs(apt);
  const dir = join(root, key);

  if (!opts.force && (await readManifest(dir))) {
    log(`image ${key} (kernel ${kernelVersion}) is cached in ${dir}`);
    await markUsed(dir);
    return imageAt(dir, key, kernelVersion, true);
  }

  await requireCpio();
  await mkdir(root, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
    throw new ImageBuildError(`haltpoint image: cannot create the image cache ${root} (${e.code ?? e.message}); pass another cache directory`);
  });
  await removeStaleScratch(root, log);
  // Scratch space next to the cache entry: same file system, so the final rename is atomic.
  const scratch = await mkdtemp(join(root, `.build-${key}-`));
  try {
    const debs = join(scratch, "debs");
    const extracted = join(scratch, "extracted");
    const rootfs = join(scratch, "rootfs");
    const staged = join(scratch, "image");
    await Promise.all([debs, extracted, rootfs, staged].map((d) => mkdir(d)));

    log(`downloading ${packages.map((p) => `${p.name}=${p.version}`).join(" ")}`);
    await downloadPackages(packages, debs, apt);
    for (const deb of (await readdir(debs)).filter((f) => f.endsWith(".deb"))) {
      await extractDeb(join(debs, deb), extracted);
    }

    log("assembling the guest root file system");
    const modules = await assembleRoot(rootfs, extracted, kernelVersion, libs, initScript, log);
    const vmlinuz = await firstExisting([join(extracted, "boot", `vmlinuz-${kernelVersion}`)]);
    if (!vmlinuz) throw new ImageBuildError(`haltpoint image: ${packages[0]!.name} has no boot/vmlinuz-${kernelVersion}`);
    await copyFile(vmlinuz, join(staged, KERNEL_FILE));

    log("packing the initramfs (cpio newc + gzip)");
    await packInitramfs(rootfs, join(staged, INITRD_FILE));
    const manifest: Manifest = { key, kernelVersion, builder: IMAGE_BUILDER_VERSION, packages, modules, builtAt: new Date().toISOString() };
    await writeFile(join(staged, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");

    const ours = await publish(staged, dir, scratch, opts.force ?? false);
    log(ours ? `image ${key} built in ${dir}` : `image ${key} was built concurrently by another process; using it`);
    await markUsed(dir);
    // A new image usually replaces an old one: drop the images nobody has used for a while.
    for (const old of await pruneImages(root, { keep: key, unusedForMs: UNUSED_IMAGE_DAYS * 86_400_000 })) {
      log(`removed image ${old.key}, unused for over ${UNUSED_IMAGE_DAYS} days`);
    }
    return imageAt(dir, key, kernelVersion, !ours);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
