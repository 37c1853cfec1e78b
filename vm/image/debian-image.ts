// Debian 12 guests with systemd as PID 1 (node option `image: "debian"` or
// `image: { packages: [...] }`): a root file system made by mmdebstrap (debootstrap where
// mmdebstrap is missing) from Debian's packages, haltpoint's units added (debian-units.ts),
// packed into an ext4 image by `mke2fs -d` (no loop mount), plus the chroot's own kernel and
// initrd. Each image is cached under `<image cache>/debian/<key>`, the key hashing the package
// list, the candidate versions apt would install of the named packages, and the units, so every
// node asking for the same list shares one image.

import { createHash } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { candidates, ImageBuildError, KERNEL_METAPACKAGE, type AptOptions } from "./apt-packages.ts";
import { defaultImageCacheRoot, publish, removeStaleScratch } from "./build-image.ts";
import { listCachedImages, markUsed, pruneImages, type CachedImage } from "./image-cache.ts";
import { DEBIAN_CUSTOMIZE_SCRIPT, DEBIAN_GUEST_FILES, INITRAMFS_MODULES } from "./debian-units.ts";
import { findOnPath } from "../find-on-path.ts";

/** Bump when what goes into a Debian image changes: old cache entries stop matching. */
export const DEBIAN_BUILDER_VERSION = 1;
export const DEBIAN_SUITE = "bookworm";

/** What every Debian guest has: systemd as PID 1, the generic kernel (CONFIG_VMGENID, for snapshot boots), sshd. */
export const DEBIAN_BASE_PACKAGES: readonly string[] = [
  "systemd-sysv", "udev", "dbus", "libpam-systemd", KERNEL_METAPACKAGE, "initramfs-tools", "openssh-server", "iproute2", "procps", "netcat-openbsd", "kmod",
];

export { DEBIAN_PACKAGE_NAME } from "../node-options.ts";

/** A built (or cached) Debian guest: what QEMU needs to boot it. */
export interface DebianImage {
  key: string;
  dir: string;
  kernel: string;
  initrd: string;
  /** The ext4 root file system (raw); machines write to an overlay, never to it. */
  rootfs: string;
  kernelVersion: string;
  /** The node's packages (without the base ones), sorted. */
  packages: string[];
  reused: boolean;
}

interface DebianManifest {
  key: string;
  kind: "debian";
  suite: string;
  packages: string[];
  versions: Record<string, string>;
  kernelVersion: string;
  builder: number;
  builtAt: string;
}

export interface DebianBuildOptions extends AptOptions {
  /** The image cache root (the Debian images go in its `debian/`); default defaultImageCacheRoot(). */
  cacheDir?: string;
  log?: (line: string) => void;
  force?: boolean;
}

/** The node's packages as one id: sorted, unique, comma separated ("" for plain "debian"). */
export function debianSpecId(packages: readonly string[]): string {
  return [...new Set(packages)].sort().join(",");
}

export function debianCacheRoot(cacheDir?: string): string {
  return join(cacheDir ?? defaultImageCacheRoot(), "debian");
}

const FILES = { kernel: "vmlinuz", initrd: "initrd.img", rootfs: "rootfs.img", manifest: "manifest.json" } as const;

function imageAt(dir: string, m: Pick<DebianManifest, "key" | "kernelVersion" | "packages">, reused: boolean): DebianImage {
  return { key: m.key, dir, kernel: join(dir, FILES.kernel), initrd: join(dir, FILES.initrd), rootfs: join(dir, FILES.rootfs), kernelVersion: m.kernelVersion, packages: m.packages, reused };
}

async function readManifest(dir: string): Promise<DebianManifest | undefined> {
  try {
    const m = JSON.parse(await readFile(join(dir, FILES.manifest), "utf8")) as DebianManifest;
    for (const f of [FILES.kernel, FILES.initrd, FILES.rootfs]) await stat(join(dir, f));
    return m.kind === "debian" ? m : undefined;
  } catch {
    return undefined;
  }
}

/** The key of an image: resolving candidate versions costs one apt-cache run (~0.5 s), no download. */
export async function debianImageKey(packages: readonly string[], apt: AptOptions = {}): Promise<{ key: string; versions: Record<string, string> }> {
  const names = [...new Set([...DEBIAN_BASE_PACKAGES, ...packages])];
  const found = await candidates(names, apt);
  const missing = names.filter((n) => !found.has(n));
  if (missing.length) {
    throw new ImageBuildError(`haltpoint image: Debian ${DEBIAN_SUITE} has no package ${missing.map((m) => `'${m}'`).join(", ")} (apt-cache policy finds no candidate; run \`apt-get update\` if the name is right)`);
  }
  const versions = Object.fromEntries(names.map((n) => [n, found.get(n)!]));
  const files = DEBIAN_GUEST_FILES.map((f) => [f.path, f.mode, f.content]);
  const key = createHash("sha256")
    .update(JSON.stringify({ builder: DEBIAN_BUILDER_VERSION, suite: DEBIAN_SUITE, packages: debianSpecId(packages), versions, files, script: DEBIAN_CUSTOMIZE_SCRIPT, modules: INITRAMFS_MODULES }))
    .digest("hex")
    .slice(0, 16);
  return { key, versions };
}

function describe(packages: readonly string[]): string {
  return packages.length ? `Debian image with ${packages.join(", ")}` : "Debian image";
}

/** How to build an image ahead, as root. */
export function buildAheadHint(packages: readonly string[]): string {
  return `sudo haltpoint image build --debian${packages.length ? ` ${packages.join(",")}` : ""}`;
}

/** Build the Debian image for `packages` (the node's, without the base ones), or return the cached one. */
export async function buildDebianImage(packages: readonly string[], opts: DebianBuildOptions = {}): Promise<DebianImage> {
  const log = opts.log ?? (() => {});
  const wanted = debianSpecId(packages).split(",").filter(Boolean);
  const root = debianCacheRoot(opts.cacheDir);
  const { key, versions } = await debianImageKey(wanted, { aptArgs: opts.aptArgs });
  const dir = join(root, key);
  const cached = !opts.force && (await readManifest(dir));
  if (cached) {
    log(`${describe(wanted)}: ${key} (kernel ${cached.kernelVersion}) is cached in ${dir}`);
    await markUsed(dir);
    return imageAt(dir, cached, true);
  }
  if (process.getuid?.() !== 0) {
    throw new ImageBuildError(`haltpoint image: building the ${describe(wanted)} needs root (mmdebstrap installs packages into a chroot); build it ahead as root: ${buildAheadHint(wanted)}`);
  }
  const tool = findOnPath("mmdebstrap") ? "mmdebstrap" : findOnPath("debootstrap") ? "debootstrap" : undefined;
  if (!tool) throw new ImageBuildError("haltpoint image: building a Debian image needs mmdebstrap (or debootstrap): apt-get install mmdebstrap");
  if (!findOnPath("mke2fs")) throw new ImageBuildError("haltpoint image: building a Debian image needs mke2fs: apt-get install e2fsprogs");

  await mkdir(root, { recursive: true });
  await removeStaleScratch(root);
  const scratch = await mkdtemp(join(root, `.build-${key}-`));
  const started = Date.now();
  const secs = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
  try {
    const chroot = join(scratch, "root");
    const staged = join(scratch, "image");
    await mkdir(staged);
    log(`building the ${describe(wanted)} ${key} with ${tool} (Debian ${DEBIAN_SUITE}, ${DEBIAN_BASE_PACKAGES.length + wanted.length} packages and their dependencies)`);
    await bootstrap(tool, chroot, [...DEBIAN_BASE_PACKAGES, ...wanted], (line) => log(`  ${line} (${secs()})`));

    log(`adding haltpoint's units (backdoor shell, kill port, network setup) (${secs()})`);
    for (const f of DEBIAN_GUEST_FILES) {
      const path = join(chroot, f.path);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, f.content);
      await chmod(path, f.mode);
    }
    await run("chroot", [chroot, "/bin/bash", "-ec", DEBIAN_CUSTOMIZE_SCRIPT], "configuring the guest in its chroot");

    const boot = await readdir(join(chroot, "boot"));
    const vmlinuz = boot.find((f) => f.startsWith("vmlinuz-"));
    const initrd = boot.find((f) => f.startsWith("initrd.img-"));
    if (!vmlinuz || !initrd) throw new ImageBuildError(`haltpoint image: the Debian chroot has no kernel and initrd in /boot (found: ${boot.join(" ") || "nothing"})`);
    await copyFile(join(chroot, "boot", vmlinuz), join(staged, FILES.kernel));
    await copyFile(join(chroot, "boot", initrd), join(staged, FILES.initrd));

    const used = Number((await run("du", ["-sb", chroot], "measuring the root file system")).split(/\s/)[0]);
    const mib = Math.ceil((used * 1.25) / 2 ** 20) + 512; // room for what tests install and write
    log(`making the ext4 root file system (${mib} MiB, ${(used / 2 ** 20).toFixed(0)} MiB used) with mke2fs -d (${secs()})`);
    await run("mke2fs", ["-q", "-t", "ext4", "-L", "hproot", "-d", chroot, join(staged, FILES.rootfs), `${mib}M`], "making the root file system");

    const manifest: DebianManifest = { key, kind: "debian", suite: DEBIAN_SUITE, packages: wanted, versions, kernelVersion: vmlinuz.slice("vmlinuz-".length), builder: DEBIAN_BUILDER_VERSION, builtAt: new Date().toISOString() };
    await writeFile(join(staged, FILES.manifest), JSON.stringify(manifest, null, 2) + "\n");
    await rm(chroot, { recursive: true, force: true });
    const ours = await publish(staged, dir, scratch, opts.force ?? false);
    log(ours ? `${describe(wanted)} ${key} built in ${dir} (${secs()})` : `${describe(wanted)} ${key} was built concurrently by another process; using it`);
    await markUsed(dir);
    return imageAt(dir, manifest, !ours);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function run(file: string, args: string[], what: string): Promise<string> {
  const r = await execa(file, args, { reject: false, env: { LC_ALL: "C" } });
  if (r.exitCode !== 0) throw new ImageBuildError(`haltpoint image: ${what} failed: ${file} ${r.exitCode === undefined ? "did not run" : `exit code ${r.exitCode}`}: ${(r.stderr || r.stdout).trim().split("\n").at(-1) ?? ""}`);
  return r.stdout;
}

/**
 * The chroot: minbase plus the packages, Recommends off, without docs, man pages and locales.
 * The initramfs holds only what finds and mounts the virtio root disk (MODULES=list plus a hook),
 * set up before the kernel package is installed so its initrd is built small the first time.
 */
async function bootstrap(tool: "mmdebstrap" | "debootstrap", chroot: string, packages: string[], progress: (line: string) => void): Promise<void> {
  const initramfsSetup = [
    `mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"`,
    `echo MODULES=list > "$1/etc/initramfs-tools/conf.d/haltpoint.conf"`,
    `printf '#!/bin/sh\\n[ "$1" = prereqs ] && exit 0\\n. /usr/share/initramfs-tools/hook-functions\\nfor m in ${INITRAMFS_MODULES.join(" ")}; do force_load "$m"; done\\n' > "$1/etc/initramfs-tools/hooks/haltpoint"`,
    `chmod 0755 "$1/etc/initramfs-tools/hooks/haltpoint"`,
  ].join(" && ");
  const args =
    tool === "mmdebstrap"
      ? [
          "--variant=minbase",
          `--include=${packages.join(",")}`,
          "--aptopt=Acquire::Languages \"none\"",
          "--dpkgopt=path-exclude=/usr/share/doc/*",
          "--dpkgopt=path-exclude=/usr/share/man/*",
          "--dpkgopt=path-exclude=/usr/share/locale/*",
          `--essential-hook=${initramfsSetup}`,
          DEBIAN_SUITE,
          chroot,
        ]
      : ["--variant=minbase", `--include=${packages.join(",")}`, DEBIAN_SUITE, chroot];
  const child = execa(tool, args, { reject: false, all: true, env: { LC_ALL: "C", DEBIAN_FRONTEND: "noninteractive" } });
  const tail: string[] = [];
  let buf = "";
  child.all?.on("data", (c: Buffer) => {
    buf += c.toString();
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      tail.push(line);
      if (tail.length > 5) tail.shift();
      // mmdebstrap's and debootstrap's own progress lines ("I: downloading packages with apt...").
      if (/^I: (running apt-get update|downloading|extracting|installing|cleaning|success|Retrieving Release|Base system installed)/.test(line)) progress(line.slice(3).replace(/\.\.\.$/, ""));
    }
  });
  const r = await child;
  if (r.exitCode !== 0) throw new ImageBuildError(`haltpoint image: ${tool} failed (${r.exitCode === undefined ? "did not run" : `exit code ${r.exitCode}`}): ${tail.at(-1) ?? ""}`);
}

export interface CachedDebianImage extends CachedImage {
  packages: string[];
  kernelVersion: string;
}

/** Every Debian image in the cache, most recently used first. */
export async function listDebianImages(cacheDir?: string): Promise<CachedDebianImage[]> {
  const out: CachedDebianImage[] = [];
  for (const i of await listCachedImages(debianCacheRoot(cacheDir))) {
    const m = await readManifest(i.dir);
    if (m) out.push({ ...i, bytes: await diskUsage(i.dir), packages: m.packages, kernelVersion: m.kernelVersion });
  }
  return out;
}

/** Bytes on disk (the root file system image is sparse). */
async function diskUsage(dir: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(dir, { recursive: true }).catch(() => [] as string[])) {
    const s = await stat(join(dir, f)).catch(() => undefined);
    if (s?.isFile()) total += s.blocks * 512;
  }
  return total;
}

/** Remove Debian images not used for `unusedForMs` (all of them without it). */
export async function pruneDebianImages(cacheDir: string | undefined, o: { unusedForMs?: number }): Promise<CachedDebianImage[]> {
  const before = await listDebianImages(cacheDir);
  const removed = new Set((await pruneImages(debianCacheRoot(cacheDir), { unusedForMs: o.unusedForMs })).map((i) => i.key));
  return before.filter((i) => removed.has(i.key));
}
