import { readFileSync } from "node:fs";
import { arch, availableParallelism, hostname, release, totalmem, type } from "node:os";
import { execa } from "execa";
import { packageFile } from "../package-root.ts";
import { QEMU_BINARY } from "../vm/qemu/qemu-argv.ts";

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

/** Gathered once per run, only when a report that shows them is written. */
export async function hostFacts(): Promise<HostFacts> {
  const pkg = JSON.parse(readFileSync(packageFile("package.json"), "utf8")) as { version: string };
  const q = await execa(QEMU_BINARY, ["--version"], { reject: false, timeout: 10_000 }).catch(() => undefined);
  const qemu = q && q.exitCode === 0 ? (String(q.stdout).split("\n")[0] ?? "").trim() || null : null;
  return {
    haltpoint: pkg.version,
    node: process.version,
    qemu,
    hostname: hostname(),
    os: `${type()} ${release()} ${arch()}`,
    cpus: availableParallelism(),
    memoryMiB: Math.round(totalmem() / 2 ** 20),
  };
}
