import { prepareQemu } from "../orchestrator/scheduling/prepare-qemu.ts";
import { QemuMachine } from "../vm/qemu/qemu-machine.ts";
import { benchContext } from "./machine-context.ts";
import { scratchDir } from "./scratch.ts";
const scratch = scratchDir("hp-try-");
const qemu = await prepareQemu("auto", (l) => console.error(l));
const variant = process.env.V === "old" ? { restoreAsBefore: { streamedRam: true, identityByPrograms: true } } : {};
for (let i = 0; i < Number(process.env.N ?? 3); i++) {
  const m = new QemuMachine("vm", { memory: 256 }, benchContext(scratch, `m${i}`), { ...qemu, ...variant }, undefined);
  (m as any).log = (s: string) => console.log(`  ${s}`);
  const t = performance.now();
  await m.start();
  const r = await m.succeed("cat /sys/class/rtc/rtc0/since_epoch; date +%s; dmesg | grep -c crng; hostname"); console.log("host", Math.floor(Date.now()/1000));
  console.log(i, (performance.now() - t).toFixed(0), JSON.stringify(m.startSteps), r.trim().replace(/\n/g, " | "));
  await m.cleanup();
}
