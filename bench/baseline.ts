// The baseline the pool benches compare against: a test's script awaited in a plain loop in
// this process (no pool, no scheduler, no reports), with fresh local machines each run.
import { join } from "node:path";
import { loadTestFile } from "../worker/load-test-file.ts";
import { buildTestContext } from "../worker/test-context.ts";
import { LocalMachine } from "../vm/local/local-machine.ts";
import type { MachineContext } from "../vm/machine.ts";

export function machineContext(dir: string): MachineContext {
  return {
    log: () => {},
    trackProcess: () => {},
    consolePath: (m) => join(dir, `${m}.console.log`),
    stateDir: (m) => join(dir, m),
    outputDir: join(dir, "out"),
  };
}

/** Load the test once, then await its script `runs` times in a loop; wall ms. */
export async function baseline(file: string, runs: number, scratch: string): Promise<number> {
  const test = await loadTestFile(file, "local");
  const t0 = performance.now();
  for (let i = 1; i <= runs; i++) {
    const dir = join(scratch, `base-${i}`);
    const machines = test.nodes.map((n) => new LocalMachine(n.name, n.options, machineContext(dir)));
    const ctx = buildTestContext(machines, i, () => {}, { breakpoint: async () => {} });
    await test.def.testScript(ctx as never);
    await Promise.all(machines.map((m) => m.cleanup()));
  }
  return performance.now() - t0;
}
