import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { MachineContext } from "../../vm/machine.ts";

/** A MachineContext for driving machines directly in a test: logs and processes are recorded. */
export function testMachineContext() {
  const root = mkdtempSync(join("/var/tmp", "hp-t-"));
  const logs: string[] = [];
  const processes = new Map<number, boolean>();
  const ctx: MachineContext = {
    log: (m, msg) => logs.push(`${m}: ${msg}`),
    trackProcess: (_m, pid, alive) => processes.set(pid, alive),
    consolePath: (m) => join(root, "logs", `${m}.console.log`),
    stateDir: (m) => join(root, "state", m),
    outputDir: join(root, "out"),
  };
  return { ctx, root, logs, processes, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** PIDs of processes whose command line contains `needle` (from /proc). */
export async function processesMatching(needle: string): Promise<number[]> {
  const { readdir, readFile } = await import("node:fs/promises");
  const out: number[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = (await readFile(`/proc/${d}/cmdline`, "utf8")).replace(/\0/g, " ");
      if (cmd.includes(needle) && Number(d) !== process.pid) out.push(Number(d));
    } catch {}
  }
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
