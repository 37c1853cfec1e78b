import type { BaseMachine, MachineContext } from "./machine.ts";
import type { ResolvedNode } from "./node-options.ts";
import { LocalMachine } from "./local/local-machine.ts";
import type { QemuRuntime } from "./qemu/qemu-runtime.ts";
import type { RunNetwork } from "./qemu/run-network.ts";

/** Per-run settings that backends read. */
export interface MachineRuntime {
  /** The guest image and accelerator the main thread chose (when the run has qemu nodes). */
  qemu?: QemuRuntime;
  /** The run's virtual network between its guests. */
  network?: RunNetwork;
}

/** Build the machine for one node with its backend. */
export async function createMachine(node: ResolvedNode, ctx: MachineContext, runtime: MachineRuntime): Promise<BaseMachine> {
  switch (node.backend) {
    case "local":
      return new LocalMachine(node.name, node.options, ctx);
    case "qemu": {
      // Loaded on demand: a local-only suite never pays for the qemu modules.
      const { createQemuMachine } = await import("./qemu/qemu-machine.ts");
      return createQemuMachine(node, ctx, runtime);
    }
  }
}
