import { rmSync } from "node:fs";
import { join } from "node:path";
import type { MachineContext } from "../../vm/machine.ts";
import { tempDir } from "./temp-dirs.ts";

/** A MachineContext for driving machines directly in a test: logs and processes are recorded. */
export function testMachineContext() {
  const root = tempDir("hp-t-", "/var/tmp");
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

/**
 * A marker in this test process's environment: every process it starts (CLI runs, QEMU,
 * sandboxes) inherits it, so process checks see only this test file's processes, not those
 * of other test runs on the same host.
 */
export const TEST_MARK = (process.env.HALTPOINT_TEST_MARK ??= `hp-test-${process.pid}-${Date.now()}`);

/** PIDs of this test run's processes (marked by TEST_MARK) whose command line contains `needle`. */
export async function processesMatching(needle: string): Promise<number[]> {
  const { readdir, readFile } = await import("node:fs/promises");
  const mark = `HALTPOINT_TEST_MARK=${TEST_MARK}\0`;
  const out: number[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = (await readFile(`/proc/${d}/cmdline`, "utf8")).replace(/\0/g, " ");
      if (!cmd.includes(needle)) continue;
      if ((await readFile(`/proc/${d}/environ`, "utf8")).includes(mark)) out.push(Number(d));
    } catch {
      // The process ended while we looked: it is not left behind.
    }
  }
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
