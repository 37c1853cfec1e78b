import { prepareQemu } from "../../orchestrator/prepare-qemu.ts";
import type { QemuRuntime } from "../../vm/qemu/qemu-machine.ts";

let runtime: Promise<QemuRuntime> | undefined;

/** The guest image and accelerator, prepared once per test file (as the orchestrator does). */
export function qemuRuntime(): Promise<QemuRuntime> {
  runtime ??= prepareQemu("auto", () => {});
  return runtime;
}

/** PIDs of every qemu-system process on the host. */
export async function qemuProcesses(): Promise<number[]> {
  const { processesMatching } = await import("./machine-context.ts");
  return (await processesMatching("qemu-system-x86_64")).filter((p) => p !== process.pid);
}
