import type { BackendName, NodeOptions } from "./types.ts";

export const BACKENDS: readonly BackendName[] = ["local", "qemu"];

/** Memory (MiB) of a machine whose node names none, per backend: defined here only. */
export const DEFAULT_MEMORY_MIB: Record<BackendName, number> = { qemu: 512, local: 64 };

const KNOWN_KEYS = new Set<keyof NodeOptions>([
  "backend", "memory", "cores", "kernel", "initrd", "append", "diskImage", "startScript", "bootTimeout", "qemuArgs", "vlans", "snapshotBoot", "image",
]);

/** A Debian package name (Debian policy 5.6.1). */
export const DEBIAN_PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/** The packages a node's `image` option asks for (sorted, unique), or undefined for haltpoint's own image. */
export function debianPackagesOf(o: NodeOptions): string[] | undefined {
  if (o.image === undefined) return undefined;
  return o.image === "debian" ? [] : [...new Set(o.image.packages)].sort();
}

function checkImage(where: string, backend: string, opts: NodeOptions): void {
  const img: unknown = opts.image;
  if (img === undefined) return;
  const shape = 'image must be "debian" or { packages: ["lighttpd", …] }';
  if (img !== "debian") {
    if (typeof img !== "object" || img === null || Array.isArray(img)) throw new Error(`${where}: ${shape}, got ${JSON.stringify(img)}`);
    const extra = Object.keys(img).filter((k) => k !== "packages");
    if (extra.length) throw new Error(`${where}: image: unknown key '${extra[0]}' (${shape})`);
    const pkgs = (img as { packages?: unknown }).packages;
    if (!Array.isArray(pkgs)) throw new Error(`${where}: image.packages must be a list of Debian package names, got ${JSON.stringify(pkgs)}`);
    const bad = pkgs.find((p) => typeof p !== "string" || !DEBIAN_PACKAGE_NAME.test(p));
    if (bad !== undefined) throw new Error(`${where}: image.packages: ${JSON.stringify(bad)} is not a Debian package name`);
  }
  if (backend !== "qemu") throw new Error(`${where}: image (a Debian guest) needs backend "qemu", not "${backend}"`);
  const clash = (["kernel", "initrd", "diskImage", "startScript"] as const).find((k) => opts[k] !== undefined);
  if (clash) throw new Error(`${where}: image and ${clash} cannot be combined (the Debian image brings its own kernel and disk)`);
}

export interface ResolvedNode {
  name: string;
  backend: BackendName;
  memory: number;
  cores: number;
  options: NodeOptions;
}

export function isBackend(s: string): s is BackendName {
  return (BACKENDS as readonly string[]).includes(s);
}

/**
 * Check a test's `nodes` and fill in defaults. Throws one line naming the node and the
 * option that is wrong. `reserved`: names a node cannot take (the test script's context
 * binds them: common/context-names.ts, which machines know nothing of).
 */
export function resolveNodes(nodes: unknown, defaultBackend: string, reserved: readonly string[]): ResolvedNode[] {
  if (nodes === undefined) return [];
  if (typeof nodes !== "object" || nodes === null || Array.isArray(nodes)) {
    throw new Error("`nodes` must be an object mapping node names to options");
  }
  const out: ResolvedNode[] = [];
  for (const [name, raw] of Object.entries(nodes)) {
    const where = `node '${name}'`;
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,62}$/.test(name)) {
      throw new Error(`${where}: a node name must start with a letter and hold only letters, digits, '-' and '_'`);
    }
    if (reserved.includes(name)) throw new Error(`${where}: the name is taken by the test script's context or the breakpoint console (${reserved.join(", ")})`);
    const opts = (raw ?? {}) as NodeOptions;
    if (typeof opts !== "object" || Array.isArray(opts)) throw new Error(`${where}: options must be an object`);
    for (const key of Object.keys(opts)) {
      if (!KNOWN_KEYS.has(key as keyof NodeOptions)) throw new Error(`${where}: unknown option '${key}' (known: ${[...KNOWN_KEYS].join(", ")})`);
    }
    // A Debian image is a QEMU guest: it needs no backend named.
    const backend = opts.backend ?? (opts.image !== undefined ? "qemu" : defaultBackend);
    if (!isBackend(backend)) throw new Error(`${where}: unknown backend '${backend}' (expected ${BACKENDS.join(" or ")})`);
    const memory = opts.memory ?? DEFAULT_MEMORY_MIB[backend];
    const cores = opts.cores ?? 1;
    if (!Number.isInteger(memory) || memory < 16 || memory > 1 << 20) throw new Error(`${where}: memory must be an integer number of MiB (16 or more), got ${JSON.stringify(opts.memory)}`);
    if (!Number.isInteger(cores) || cores < 1 || cores > 256) throw new Error(`${where}: cores must be an integer from 1 to 256, got ${JSON.stringify(opts.cores)}`);
    if (opts.bootTimeout !== undefined && !(typeof opts.bootTimeout === "number" && opts.bootTimeout > 0)) {
      throw new Error(`${where}: bootTimeout must be a positive number of seconds`);
    }
    if (opts.snapshotBoot !== undefined && typeof opts.snapshotBoot !== "boolean") throw new Error(`${where}: snapshotBoot must be true or false, got ${JSON.stringify(opts.snapshotBoot)}`);
    if (opts.vlans !== undefined) {
      const v = opts.vlans;
      if (!Array.isArray(v) || v.length === 0 || v.some((x) => !Number.isInteger(x) || x < 1 || x > 255) || new Set(v).size !== v.length) {
        throw new Error(`${where}: vlans must be a non-empty list of distinct integers from 1 to 255, got ${JSON.stringify(v)}`);
      }
    }
    checkImage(where, backend, opts);
    out.push({ name, backend, memory, cores, options: { ...opts, backend } });
  }
  return out;
}
