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
import { removeScratchDir } from "./scratch-dir.ts";
import { listCachedImages, markUsed, pruneImages, type CachedImage } from "./image-cache.ts";
import { DEBIAN_CUSTOMIZE_SCRIPT, DEBIAN_GUEST_FILES, INITRAMFS_MODULES } from "./debian-units.ts";
import { findOnPath } from "../find-on-path.ts";
import type { DebianSpec } from "../node-options.ts";

/** Bump when what goes into a Debian image changes: old cache entries stop matching. */
export const DEBIAN_BUILDER_VERSION = 1;
export const DEBIAN_SUITE = "bookworm";

/** What every Debian guest has: systemd as PID 1, the generic kernel (CONFIG_VMGENID, for snapshot boots), sshd. */
export const DEBIAN_BASE_PACKAGES: readonly string[] = [
  "systemd-sysv", "udev", "dbus", "libpam-systemd", KERNEL_METAPACKAGE, "initramfs-tools", "openssh-server", "iproute2", "procps", "netcat-openbsd", "kmod",
];

export { DEBIAN_PACKAGE_NAME } from "../node-options.ts";
export type { DebianSpec } from "../node-options.ts";

/** Lines of a failing setup script's output shown in its error. */
const SETUP_OUTPUT_LINES = 40;

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
  /** The paths of the node's own files, sorted, and whether it has a setup script. */
  files: string[];
  setup: boolean;
  reused: boolean;
}

interface DebianManifest {
  key: string;
  kind: "debian";
  suite: string;
  packages: string[];
  files?: string[];
  setup?: boolean;
  versions: Record<string, string>;
  kernelVersion: string;
  builder: number;
  builtAt: string;
}

export interface DebianBuildOptions extends AptOptions {
  /** The image cache root (the Debian images go in its `debian/`); default defaultImageCacheRoot(). */
  cacheDir?: string;
  /** Who asked for the image ("file: node 'web'"), named in a failing setup's error. */
  who?: string;
  log?: (line: string) => void;
  force?: boolean;
}

/** A spec from a package list alone (the CLI's `--debian PKGS`). */
export function specOf(spec: DebianSpec | readonly string[]): DebianSpec {
  if (!Array.isArray(spec)) {
    const s = spec as DebianSpec;
    return { packages: [...new Set(s.packages)].sort(), files: s.files, setup: s.setup };
  }
  return { packages: [...new Set(spec as readonly string[])].sort(), files: {}, setup: "" };
}

/** The node's own configuration (files and setup) as a digest, or "" when it has none. */
function configDigest(s: DebianSpec): string {
  const files = Object.keys(s.files).sort().map((p) => [p, s.files[p]]);
  if (!files.length && !s.setup) return "";
  return createHash("sha256").update(JSON.stringify({ files, setup: s.setup })).digest("hex").slice(0, 16);
}

/**
 * An image's spec as one id: the sorted, unique packages, comma separated ("" for plain
 * "debian"), then `+` and a digest of the files and setup when there are any.
 */
export function debianSpecId(spec: DebianSpec | readonly string[]): string {
  const s = specOf(spec);
  const config = configDigest(s);
  return s.packages.join(",") + (config ? `+${config}` : "");
}

export function debianCacheRoot(cacheDir?: string): string {
  return join(cacheDir ?? defaultImageCacheRoot(), "debian");
}

const FILES = { kernel: "vmlinuz", initrd: "initrd.img", rootfs: "rootfs.img", manifest: "manifest.json" } as const;

function imageAt(dir: string, m: Pick<DebianManifest, "key" | "kernelVersion" | "packages" | "files" | "setup">, reused: boolean): DebianImage {
  return { key: m.key, dir, kernel: join(dir, FILES.kernel), initrd: join(dir, FILES.initrd), rootfs: join(dir, FILES.rootfs), kernelVersion: m.kernelVersion, packages: m.packages, files: m.files ?? [], setup: m.setup ?? false, reused };
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
export async function debianImageKey(spec: DebianSpec | readonly string[], apt: AptOptions = {}): Promise<{ key: string; versions: Record<string, string> }> {
  const s = specOf(spec);
  const packages = s.packages;
  const names = [...new Set([...DEBIAN_BASE_PACKAGES, ...packages])];
  const found = await candidates(names, apt);
  const missing = names.filter((n) => !found.has(n));
  if (missing.length) {
    throw new ImageBuildError(`haltpoint image: Debian ${DEBIAN_SUITE} has no package ${missing.map((m) => `'${m}'`).join(", ")} (apt-cache policy finds no candidate; run \`apt-get update\` if the name is right)`);
  }
  const versions = Object.fromEntries(names.map((n) => [n, found.get(n)!]));
  const files = DEBIAN_GUEST_FILES.map((f) => [f.path, f.mode, f.content]);
  const key = createHash("sha256")
    .update(JSON.stringify({ builder: DEBIAN_BUILDER_VERSION, suite: DEBIAN_SUITE, packages: s.packages.join(","), versions, files, script: DEBIAN_CUSTOMIZE_SCRIPT, modules: INITRAMFS_MODULES, config: configDigest(s) }))
    .digest("hex")
    .slice(0, 16);
  return { key, versions };
}

function describe(packages: readonly string[], s?: DebianSpec): string {
  const config = s ? [Object.keys(s.files).length ? `${Object.keys(s.files).length} files` : "", s.setup ? "a setup script" : ""].filter(Boolean).join(" and ") : "";
  return (packages.length ? `Debian image with ${packages.join(", ")}` : "Debian image") + (config ? ` (${config})` : "");
}

/** How to build an image ahead, as root. */
export function buildAheadHint(packages: readonly string[]): string {
  return `sudo haltpoint image build --debian${packages.length ? ` ${packages.join(",")}` : ""}`;
}

/** Build the Debian image for `spec` (the node's packages without the base ones, files, setup), or return the cached one. */
export async function buildDebianImage(spec: DebianSpec | readonly string[], opts: DebianBuildOptions = {}): Promise<DebianImage> {
  const log = opts.log ?? (() => {});
  const s = specOf(spec);
  const wanted = s.packages;
  const root = debianCacheRoot(opts.cacheDir);
  const { key, versions } = await debianImageKey(s, { aptArgs: opts.aptArgs });
  const dir = join(root, key);
  const cached = !opts.force && (await readManifest(dir));
  if (cached) {
    log(`${describe(wanted, s)}: ${key} (kernel ${cached.kernelVersion}) is cached in ${dir}`);
    await markUsed(dir);
    return imageAt(dir, cached, true);
  }
  if (process.getuid?.() !== 0) {
    // `image build --debian` takes packages only: an image with files or setup is built by a run.
    const file = opts.who?.replace(/: node '[^']*'$/, "");
    const ahead = configDigest(s) ? `run a test that uses it once as root: sudo haltpoint run ${file ?? "FILE"}` : buildAheadHint(wanted);
    throw new ImageBuildError(`haltpoint image: building the ${describe(wanted, s)} needs root (mmdebstrap installs packages into a chroot); build it ahead as root: ${ahead}`);
  }
  const tool = findOnPath("mmdebstrap") ? "mmdebstrap" : findOnPath("debootstrap") ? "debootstrap" : undefined;
  if (!tool) throw new ImageBuildError("haltpoint image: building a Debian image needs mmdebstrap (or debootstrap): apt-get install mmdebstrap");
  if (!findOnPath("mke2fs")) throw new ImageBuildError("haltpoint image: building a Debian image needs mke2fs: apt-get install e2fsprogs");

  await mkdir(root, { recursive: true });
  await removeStaleScratch(root, log);
  const scratch = await mkdtemp(join(root, `.build-${key}-`));
  const started = Date.now();
  const secs = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
  try {
    const chroot = join(scratch, "root");
    const staged = join(scratch, "image");
    await mkdir(staged);
    log(`building the ${describe(wanted, s)} ${key} with ${tool} (Debian ${DEBIAN_SUITE}, ${DEBIAN_BASE_PACKAGES.length + wanted.length} packages and their dependencies)`);
    await bootstrap(tool, chroot, [...DEBIAN_BASE_PACKAGES, ...wanted], (line) => log(`  ${line} (${secs()})`));

    log(`adding haltpoint's units (backdoor shell, kill port, network setup) (${secs()})`);
    for (const f of DEBIAN_GUEST_FILES) {
      const path = join(chroot, f.path);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, f.content);
      await chmod(path, f.mode);
    }
    await run("chroot", [chroot, "/bin/bash", "-ec", DEBIAN_CUSTOMIZE_SCRIPT], "configuring the guest in its chroot");
    await applyNodeConfig(chroot, s, opts.who, (line) => log(`${line} (${secs()})`));

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

    const manifest: DebianManifest = { key, kind: "debian", suite: DEBIAN_SUITE, packages: wanted, files: Object.keys(s.files).sort(), setup: s.setup !== "", versions, kernelVersion: vmlinuz.slice("vmlinuz-".length), builder: DEBIAN_BUILDER_VERSION, builtAt: new Date().toISOString() };
    await writeFile(join(staged, FILES.manifest), JSON.stringify(manifest, null, 2) + "\n");
    await rm(chroot, { recursive: true, force: true });
    const ours = await publish(staged, dir, scratch, opts.force ?? false);
    log(ours ? `${describe(wanted, s)} ${key} built in ${dir} (${secs()})` : `${describe(wanted)} ${key} was built concurrently by another process; using it`);
    await markUsed(dir);
    return imageAt(dir, manifest, !ours);
  } finally {
    // Never in place of the build's own error: a scratch dir left behind is swept by a later build.
    await removeScratchDir(scratch).catch((e: Error) => log(`could not remove the build directory ${scratch}: ${e.message}`));
  }
}

/**
 * The node's own configuration: its files (after haltpoint's, so a node may replace one of
 * them), then its setup script, run as root by bash -e in the chroot. A failing script is one
 * error naming who asked for the image, with the script's output.
 */
export async function applyNodeConfig(chroot: string, s: DebianSpec, who: string | undefined, log: (line: string) => void): Promise<void> {
  const paths = Object.keys(s.files).sort();
  if (paths.length) log(`writing the node's ${paths.length} files into the image`);
  for (const p of paths) {
    // Written from inside the chroot, so a symlink on the way (/var/run → /run) resolves in
    // the image, never on the host.
    const content = s.files[p]!;
    const w = await execa("chroot", [chroot, "/bin/sh", "-ec", 'mkdir -p "$(dirname "$1")"; rm -f "$1"; cat > "$1"; chmod "$2" "$1"', "sh", p, content.startsWith("#!") ? "0755" : "0644"], { input: content, reject: false, all: true });
    if (w.exitCode !== 0) throw new ImageBuildError(`haltpoint image: ${who ? `${who}: ` : ""}image.files: cannot write ${p} in the image: ${(w.all ?? "").trim().split("\n").at(-1)}`);
  }
  if (!s.setup) return;
  log("running the node's setup script as root in the image");
  const r = await execa("chroot", [chroot, "/bin/bash", "-e", "-s"], {
    input: s.setup,
    reject: false,
    all: true,
    env: { LC_ALL: "C", DEBIAN_FRONTEND: "noninteractive", HOME: "/root", PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
    extendEnv: false,
  });
  if (r.exitCode !== 0) {
    const lines = (r.all ?? "").trimEnd().split("\n");
    const shown = lines.length > SETUP_OUTPUT_LINES ? [`(… ${lines.length - SETUP_OUTPUT_LINES} lines before)`, ...lines.slice(-SETUP_OUTPUT_LINES)] : lines;
    const status = r.exitCode === undefined ? `did not run (${r.shortMessage})` : `exit status ${r.exitCode}`;
    throw new ImageBuildError(`haltpoint image: ${who ? `${who}: ` : ""}image.setup failed (${status}) in the image's chroot; its output:\n${shown.map((l) => `  | ${l}`).join("\n") || "  (no output)"}`);
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
  /** The node's own files (paths) and whether it had a setup script. */
  files: string[];
  setup: boolean;
  kernelVersion: string;
}

/** Every Debian image in the cache, most recently used first. */
export async function listDebianImages(cacheDir?: string): Promise<CachedDebianImage[]> {
  const out: CachedDebianImage[] = [];
  for (const i of await listCachedImages(debianCacheRoot(cacheDir))) {
    const m = await readManifest(i.dir);
    if (m) out.push({ ...i, bytes: await diskUsage(i.dir), packages: m.packages, files: m.files ?? [], setup: m.setup ?? false, kernelVersion: m.kernelVersion });
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
