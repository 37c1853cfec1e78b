import type { QemuRuntime } from "../../vm/qemu/qemu-runtime.ts";
import type { DebianImage } from "../../vm/image/debian-image.ts";
import { debianSpecOf, type DebianSpec, type ResolvedNode } from "../../vm/node-options.ts";

/** A Debian image a run needs, and who asks for it ("file: node 'web'", named in its build errors). */
export interface WantedDebianImage {
  spec: DebianSpec;
  who: string;
}

/** The Debian images of the guests among `nodes` (of the test file `file`). */
export function debianImagesOf(nodes: readonly ResolvedNode[], file: string): WantedDebianImage[] {
  return nodes.flatMap((n) => {
    const spec = debianSpecOf(n.options);
    return spec ? [{ spec, who: `${file}: node '${n.name}'` }] : [];
  });
}

/**
 * Once per run of the orchestrator, before any qemu test starts: build (or reuse) the
 * guest image and choose the accelerator — a real short boot probes KVM, the verdict is
 * cached per host — so that no worker pays for either. `debian`: the package lists of the
 * run's Debian nodes (node option `image`); each distinct spec is built (or found) once,
 * and one that cannot be built fails only the tests that ask for it.
 */
export async function prepareQemu(
  requested: "auto" | "kvm" | "tcg",
  log: (line: string) => void,
  o: { snapshotBoot?: boolean; debian?: WantedDebianImage[]; previous?: QemuRuntime } = {},
): Promise<QemuRuntime> {
  if (o.previous) {
    // Watch mode's next run: the same image and accelerator (the probe is a real boot); only the Debian images its tests name are looked up again.
    const rt: QemuRuntime = { ...o.previous, snapshotBoot: o.snapshotBoot ?? true };
    delete rt.debian;
    if (o.debian?.length) rt.debian = await prepareDebian(o.debian, log);
    return rt;
  }
  const { buildImage } = await import("../../vm/image/build-image.ts");
  const { chooseAccel } = await import("../../vm/qemu/accel.ts");
  // Both log what they decided and why (image key and cache, accelerator and reason).
  const image = await buildImage({ log });
  const choice = await chooseAccel({ requested, image, log });
  const rt: QemuRuntime = { kernel: image.kernel, initrd: image.initrd, accel: choice.accel, snapshotBoot: o.snapshotBoot ?? true };
  if (o.debian?.length) rt.debian = await prepareDebian(o.debian, log);
  return rt;
}

async function prepareDebian(wanted: WantedDebianImage[], log: (line: string) => void): Promise<Record<string, DebianImage | { error: string }>> {
  const { buildDebianImage, debianSpecId } = await import("../../vm/image/debian-image.ts");
  const out: Record<string, DebianImage | { error: string }> = {};
  for (const { spec, who } of wanted) {
    const id = debianSpecId(spec);
    if (id in out) continue;
    try {
      out[id] = await buildDebianImage(spec, { log, who });
    } catch (e) {
      const msg = (e as Error).message.replace(/^haltpoint image: /, "");
      out[id] = { error: msg };
      log(msg);
    }
  }
  return out;
}
