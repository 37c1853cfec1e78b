import { join } from "node:path";
import type { MachineContext } from "../vm/machine.ts";

/** A quiet MachineContext for machines a bench drives directly: everything under `scratch/name`. */
export const benchContext = (scratch: string, name: string): MachineContext => ({
  log: () => {},
  trackProcess: () => {},
  consolePath: (m) => join(scratch, name, `${m}.console.log`),
  stateDir: (m) => join(scratch, name, m),
  outputDir: join(scratch, name, "out"),
});
