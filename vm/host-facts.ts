import { readFileSync } from "node:fs";
import { arch, availableParallelism, hostname, release, totalmem, type } from "node:os";
import { execa } from "execa";
import { packageFile } from "../package-root.ts";
import { QEMU_BINARY } from "./qemu/qemu-argv.ts";

/** Where a run ran: what a report shows so that two runs' figures can be compared. */
export interface HostFacts {
  haltpoint: string;
  node: string;
  /** `qemu-system-x86_64 --version`'s first line, or null where it is not installed. */
  qemu: string | null;
  hostname: string;
  os: string;
  cpus: number;
  memoryMiB: number;
}

/** haltpoint's own version (its package.json). */
export function haltpointVersion(): string {
  return (JSON.parse(readFileSync(packageFile("package.json"), "utf8")) as { version: string }).version;
}

/** `qemu-system-x86_64 --version`'s first line, or null where it is not installed (reports, bundles). */
export async function qemuVersion(): Promise<string | null> {
  const q = await execa(QEMU_BINARY, ["--version"], { reject: false, timeout: 10_000 }).catch(() => undefined);
  return q && q.exitCode === 0 ? (String(q.stdout).split("\n")[0] ?? "").trim() || null : null;
}

/** Gathered once per run, only when a report that shows them is written. */
export async function hostFacts(): Promise<HostFacts> {
  return {
    haltpoint: haltpointVersion(),
    node: process.version,
    qemu: await qemuVersion(),
    hostname: hostname(),
    os: `${type()} ${release()} ${arch()}`,
    cpus: availableParallelism(),
    memoryMiB: Math.round(totalmem() / 2 ** 20),
  };
}
