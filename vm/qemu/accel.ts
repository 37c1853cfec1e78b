// Choosing KVM or TCG. /dev/kvm opening is not enough: under nested virtualisation a
// KVM guest can hang right after "Probing EDD" or QEMU can abort on an MSR it cannot
// set. So 'auto' boots the real image once under KVM and keeps KVM only if the guest
// reaches its backdoor shell; the verdict is cached per host, QEMU and image.

import { constants } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir, release, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { execa } from "execa";
import type { GuestImage } from "../image/build-image.ts";
import { DEFAULT_APPEND } from "../image/guest-params.ts";
import { buildQemuArgv, QEMU_BINARY } from "./qemu-argv.ts";
import { ShellListener } from "./shell-listener.ts";

export type Accel = "kvm" | "tcg";

export interface AccelChoice {
  accel: Accel;
  reason: string;
  /** True when the verdict came from the cache file and no probe ran. */
  cached: boolean;
}

export interface ChooseAccelOptions {
  requested: "auto" | Accel;
  image: GuestImage;
  /** Default defaultAccelCacheFile(). */
  cacheFile?: string;
  log?: (line: string) => void;
  /** The KVM device to check (tests point it elsewhere). Default /dev/kvm. */
  kvmDevice?: string;
  /** How long the probe boot may take to reach the backdoor shell. Default 8 s (TCG needs ~2.5 s, KVM < 1 s). */
  probeTimeoutMs?: number;
}

interface CacheEntry {
  accel: Accel;
  reason: string;
  decidedAt: string;
}

interface CacheFile {
  version: 1;
  verdicts: Record<string, CacheEntry>;
}

export function defaultAccelCacheFile(): string {
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(cache, "haltpoint", "accel.json");
}

/** One probe per host/QEMU/image at a time, even when many callers ask at once. */
const inFlight = new Map<string, Promise<AccelChoice>>();

async function kvmOpenError(device: string): Promise<string | undefined> {
  try {
    const fh = await open(device, constants.O_RDWR);
    await fh.close();
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

async function qemuVersion(): Promise<string> {
  const r = await execa(QEMU_BINARY, ["--version"], { reject: false });
  if (r.exitCode !== 0) throw new Error(`${QEMU_BINARY} not found or not runnable; install it with \`apt-get install qemu-system-x86\``);
  return r.stdout.split("\n")[0]!.trim();
}

async function readCache(file: string): Promise<CacheFile> {
  try {
    const c = JSON.parse(await readFile(file, "utf8")) as CacheFile;
    if (c.version === 1 && c.verdicts && typeof c.verdicts === "object") return c;
  } catch {
    // missing or corrupt: start afresh
  }
  return { version: 1, verdicts: {} };
}

async function writeCache(file: string, key: string, entry: CacheEntry): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const cache = await readCache(file); // re-read: another process may have added a verdict
  cache.verdicts[key] = entry;
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(cache, null, 2) + "\n");
  await rename(tmp, file);
}

/** Boot the image under KVM; true verdict only if the backdoor marker shows up in time. */
async function probeKvm(image: GuestImage, timeoutMs: number): Promise<{ ok: boolean; reason: string }> {
  // Short path: UNIX socket paths must fit in 107 bytes.
  const dir = await mkdtemp(join(tmpdir(), "hp-accel-"));
  const listener = await ShellListener.listen(join(dir, "shell.sock"));
  const argv = buildQemuArgv({
    name: "haltpoint-kvm-probe",
    kernel: image.kernel,
    initrd: image.initrd,
    append: DEFAULT_APPEND,
    memoryMiB: 256,
    cores: 1,
    accel: "kvm",
    qmpSocket: join(dir, "qmp.sock"),
    shellSocket: listener.path,
    serial: { type: "file", path: join(dir, "serial.log") },
  });
  const started = Date.now();
  const qemu = execa(QEMU_BINARY, argv, { reject: false, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const exited = new AbortController();
  void qemu.then((r) => {
    const why = r.stderr.trim().split("\n").find((l) => /error/i.test(l)) ?? r.stderr.trim().split("\n").at(-1) ?? "";
    exited.abort(`QEMU exited (${r.signal ?? `status ${r.exitCode}`})${why ? `: ${why.replace(/^qemu-system-x86_64: /, "")}` : ""}`);
  });
  try {
    await listener.waitForMarker(timeoutMs, exited.signal);
    return { ok: true, reason: `KVM probe boot reached the backdoor shell in ${((Date.now() - started) / 1000).toFixed(1)} s` };
  } catch (e) {
    // The shell socket can close a moment before QEMU's exit is reported: give it that moment.
    if (!exited.signal.aborted) await Promise.race([qemu, new Promise((r) => setTimeout(r, 500).unref())]);
    const timedOut = Date.now() - started >= timeoutMs;
    const msg = exited.signal.aborted
      ? String(exited.signal.reason)
      : timedOut
        ? `no backdoor shell within ${timeoutMs / 1000} s (KVM guests hang here, typically nested virtualisation)`
        : (e as Error).message;
    return { ok: false, reason: `KVM probe boot failed: ${msg}` };
  } finally {
    qemu.kill("SIGKILL");
    await qemu;
    await listener.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function decide(opts: ChooseAccelOptions, log: (line: string) => void): Promise<AccelChoice> {
  const kvmDevice = opts.kvmDevice ?? "/dev/kvm";
  const openError = await kvmOpenError(kvmDevice);
  if (openError) return { accel: "tcg", reason: `${kvmDevice} cannot be opened read-write (${openError})`, cached: false };

  const cacheFile = opts.cacheFile ?? defaultAccelCacheFile();
  const key = `${release()}|${await qemuVersion()}|${opts.image.key}`;
  const hit = (await readCache(cacheFile)).verdicts[key];
  if (hit) return { accel: hit.accel, reason: `${hit.reason} (verdict cached ${hit.decidedAt} in ${cacheFile})`, cached: true };

  let pending = inFlight.get(`${cacheFile}|${key}`);
  if (!pending) {
    log(`accel: ${kvmDevice} opens; probing KVM with a short boot of image ${opts.image.key}`);
    pending = (async () => {
      const probe = await probeKvm(opts.image, opts.probeTimeoutMs ?? 8000);
      const accel: Accel = probe.ok ? "kvm" : "tcg";
      await writeCache(cacheFile, key, { accel, reason: probe.reason, decidedAt: new Date().toISOString() });
      return { accel, reason: probe.reason, cached: false };
    })().finally(() => inFlight.delete(`${cacheFile}|${key}`));
    inFlight.set(`${cacheFile}|${key}`, pending);
  }
  return pending;
}

/** Pick the accelerator for qemu machines and log the choice with its reason. */
export async function chooseAccel(opts: ChooseAccelOptions): Promise<AccelChoice> {
  const log = opts.log ?? (() => {});
  const choice = opts.requested === "auto" ? await decide(opts, log) : { accel: opts.requested, reason: `${opts.requested} requested explicitly`, cached: false };
  log(`accel: ${choice.accel} — ${choice.reason}`);
  return choice;
}
