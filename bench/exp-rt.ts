import { prepareQemu } from "../orchestrator/scheduling/prepare-qemu.ts";
import { QemuMachine } from "../vm/qemu/qemu-machine.ts";
import { benchContext } from "./machine-context.ts";
import { scratchDir } from "./scratch.ts";
const PACKAGES = ["curl", "lighttpd"];
const scratch = scratchDir("hp-exp-");
const qemu = await prepareQemu("auto", () => {}, { debian: [{ spec: { packages: PACKAGES, files: {}, setup: "" }, who: "bench" }] });
const options: any = { backend: "qemu", image: { packages: PACKAGES } };
const m = new QemuMachine("deb", options, benchContext(scratch, `r`), qemu, undefined);
await m.start();
const rt: number[] = [];
for (let i = 0; i < 60; i++) { const t = performance.now(); await m.succeed("true"); rt.push(performance.now() - t); }
console.log(rt.map((x) => x.toFixed(0)).join(" "));
console.log(await m.succeed("ps -eo pid,stat,time,args --sort=-time | head -12; cat /proc/loadavg"));
await m.cleanup();
