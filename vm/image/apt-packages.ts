// The Debian packages the guest image is made of: resolving the exact versions apt would
// fetch (they are part of the image's cache key) and downloading them.

import { execa } from "execa";

export interface ResolvedPackage {
  name: string;
  version: string;
}

/** The kernel metapackage; it depends on the real, ABI-versioned kernel package. */
export const KERNEL_METAPACKAGE = "linux-image-amd64";

/** Userland packages taken from Debian (libz, libcrypt, libc, ld-linux come from the host). */
export const USERLAND_PACKAGES: readonly string[] = [
  "busybox-static",
  "bash-static",
  "dropbear-bin",
  "libtomcrypt1",
  "libtommath1",
  "libgmp10",
];

export class ImageBuildError extends Error {
  override name = "ImageBuildError";
}

const UPDATE_HINT = "run `apt-get update` first (a Debian 12 'bookworm' main source is needed)";

export interface AptOptions {
  /** Extra `-o Option=value` arguments for apt-get/apt-cache (tests point Dir::State::Lists elsewhere). */
  aptArgs?: string[];
}

async function apt(tool: "apt-cache" | "apt-get", args: string[], opts: AptOptions & { cwd?: string } = {}) {
  try {
    return await execa(tool, [...(opts.aptArgs ?? []), ...args], { cwd: opts.cwd, reject: false, env: { LC_ALL: "C" } });
  } catch (e) {
    throw new ImageBuildError(`haltpoint image: cannot run ${tool} (${(e as Error).message}); the image builder needs a Debian host with apt`);
  }
}

function missingTool(result: { code?: string; failed: boolean; exitCode?: number }): boolean {
  return result.code === "ENOENT" || (result.failed && result.exitCode === undefined);
}

/** `apt-cache policy` → candidate version per package name ("(none)" and unknown names left out). */
function parsePolicy(text: string): Map<string, string> {
  const candidates = new Map<string, string>();
  let current: string | undefined;
  for (const line of text.split("\n")) {
    const head = /^(\S+):$/.exec(line);
    if (head) current = head[1];
    const cand = /^\s+Candidate:\s+(\S+)/.exec(line);
    if (cand && current && cand[1] !== "(none)") candidates.set(current, cand[1]!);
  }
  return candidates;
}

export async function candidates(names: string[], opts: AptOptions): Promise<Map<string, string>> {
  const r = await apt("apt-cache", ["policy", ...names], opts);
  if (missingTool(r)) throw new ImageBuildError("haltpoint image: apt-cache not found; the image builder needs a Debian host with apt");
  return parsePolicy(r.stdout);
}

function notFound(name: string): ImageBuildError {
  return new ImageBuildError(`haltpoint image: apt-get cannot find ${name}; ${UPDATE_HINT}`);
}

/**
 * Resolve the kernel package behind the metapackage (apt-cache depends) and the
 * candidate version of every package (apt-cache policy), without downloading anything.
 * The kernel package comes first.
 */
export async function resolveGuestPackages(opts: AptOptions = {}): Promise<ResolvedPackage[]> {
  // Each apt-cache run parses all package lists (~0.3-0.5 s): run the independent ones together.
  const [deps, userland] = await Promise.all([
    apt("apt-cache", ["depends", "--no-recommends", "--no-suggests", KERNEL_METAPACKAGE], opts),
    candidates([KERNEL_METAPACKAGE, ...USERLAND_PACKAGES], opts),
  ]);
  if (!userland.has(KERNEL_METAPACKAGE)) throw notFound(KERNEL_METAPACKAGE);
  const kernel = /Depends:\s+(linux-image-\S+-amd64)\s*$/m.exec(deps.stdout)?.[1];
  if (!kernel) throw new ImageBuildError(`haltpoint image: cannot tell which kernel ${KERNEL_METAPACKAGE} depends on (apt-cache depends printed no linux-image-*-amd64); ${UPDATE_HINT}`);
  const versions = new Map([...userland, ...(await candidates([kernel], opts))]);
  return [kernel, ...USERLAND_PACKAGES].map((name) => {
    const version = versions.get(name);
    if (!version) throw notFound(name);
    return { name, version };
  });
}

/** `apt-get download` the exact versions into `dir` (no root needed, nothing installed). */
export async function downloadPackages(packages: ResolvedPackage[], dir: string, opts: AptOptions = {}): Promise<void> {
  const r = await apt("apt-get", ["download", "-q", ...packages.map((p) => `${p.name}=${p.version}`)], { ...opts, cwd: dir });
  if (missingTool(r)) throw new ImageBuildError("haltpoint image: apt-get not found; the image builder needs a Debian host with apt");
  if (r.exitCode !== 0) {
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("E:"));
    const why = errors.at(-1)?.replace(/^E:\s*/, "") ?? `exit status ${r.exitCode}`;
    throw new ImageBuildError(`haltpoint image: apt-get download failed: ${why}; check the network or ${UPDATE_HINT}`);
  }
}
