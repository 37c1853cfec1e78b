import { prepareQemu } from "../../orchestrator/scheduling/prepare-qemu.ts";
import type { QemuRuntime } from "../../vm/qemu/qemu-machine.ts";
import { processesMatching } from "./machine-context.ts";

let runtime: Promise<QemuRuntime> | undefined;

/** The guest image and accelerator, prepared once per test file (as the orchestrator does). */
export function qemuRuntime(): Promise<QemuRuntime> {
  runtime ??= prepareQemu("auto", () => {});
  return runtime;
}

/** PIDs of the qemu-system processes this test file started (directly or through a CLI run). */
export async function qemuProcesses(): Promise<number[]> {
  return (await processesMatching("qemu-system-x86_64")).filter((p) => p !== process.pid);
}
