import type { BaseMachine, MachineContext } from "./machine.ts";
import type { ResolvedNode } from "./node-options.ts";
import { LocalMachine } from "./local/local-machine.ts";

const QEMU_MODULE: string = "./qemu/qemu-machine.ts";

/** Build the machine for one node with its backend. */
export async function createMachine(node: ResolvedNode, ctx: MachineContext, runtime: MachineRuntime): Promise<BaseMachine> {
  switch (node.backend) {
    case "local":
      return new LocalMachine(node.name, node.options, ctx);
    case "qemu": {
      // Loaded on demand: a local-only suite never pays for the qemu modules.
      const { createQemuMachine } = await import(QEMU_MODULE);
      return createQemuMachine(node, ctx, runtime);
    }
  }
}

/** Per-run settings that backends read (from the CLI). */
export interface MachineRuntime {
  accel: "auto" | "kvm" | "tcg";
}
