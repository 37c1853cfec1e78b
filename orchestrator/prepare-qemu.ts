import type { QemuRuntime } from "../vm/qemu/qemu-machine.ts";

/**
 * Once per run of the orchestrator, before any qemu test starts: build (or reuse) the
 * guest image and choose the accelerator — a real short boot probes KVM, the verdict is
 * cached per host — so that no worker pays for either.
 */
export async function prepareQemu(requested: "auto" | "kvm" | "tcg", log: (line: string) => void, o: { snapshotBoot?: boolean } = {}): Promise<QemuRuntime> {
  const { buildImage } = await import("../vm/image/build-image.ts");
  const { chooseAccel } = await import("../vm/qemu/accel.ts");
  // Both log what they decided and why (image key and cache, accelerator and reason).
  const image = await buildImage({ log });
  const choice = await chooseAccel({ requested, image, log });
  return { kernel: image.kernel, initrd: image.initrd, accel: choice.accel, snapshotBoot: o.snapshotBoot ?? true };
}
