// bench/debian-vm: the Debian systemd guest (node option `image`): building its image cold
// (a scratch cache: mmdebstrap and all) and finding it cached, a cold boot to the backdoor
// shell and to `systemctl is-system-running`, the first boot of a shape (boot, wait until
// running, save the snapshot), restores from that snapshot, and one command's round trip.
// Needs root (the image build).
//   npm run bench:debian
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { prepareQemu } from "../orchestrator/scheduling/prepare-qemu.ts";
import { applyV8Flags } from "../orchestrator/v8-flags.ts";
import { buildDebianImage, debianSpecId } from "../vm/image/debian-image.ts";
import { QemuMachine } from "../vm/qemu/qemu-machine.ts";
import type { MachineContext } from "../vm/machine.ts";
import type { NodeOptions } from "../vm/types.ts";
import { fmt, percentile, printTable } from "./table.ts";
import { benchContext } from "./machine-context.ts";

applyV8Flags();

const PACKAGES = ["lighttpd", "curl"];
const BOOTS = Number(process.env.HP_BENCH_BOOTS ?? 2);
const RESTORES = Number(process.env.HP_BENCH_RESTORES ?? 5);
const COMMANDS = Number(process.env.HP_BENCH_COMMANDS ?? 200);
const scratch = mkdtempSync(join("/var/tmp", "hp-bdeb-"));
const ctx = (name: string): MachineContext => benchContext(scratch, name);
const secs = (ms: number) => fmt(ms / 1000, 2);
const rows: (string | number)[][] = [];
const row = (what: string, ms: number[]) => {
  const s = [...ms].sort((a, b) => a - b);
  rows.push([what, s.length, secs(percentile(s, 0.5)), secs(s.at(-1)!)]);
};

let t = performance.now();
await buildDebianImage(PACKAGES, { cacheDir: join(scratch, "cache") });
row(`image build, cold (mmdebstrap, ${PACKAGES.join(" ")})`, [performance.now() - t]);
rmSync(join(scratch, "cache"), { recursive: true, force: true });

const qemu = await prepareQemu("auto", (l) => console.error(l), { debian: [PACKAGES] });
const cached: number[] = [];
for (let i = 0; i < 3; i++) {
  t = performance.now();
  await buildDebianImage(PACKAGES);
  cached.push(performance.now() - t);
}
row("image build, cached (apt-cache policy for the key)", cached);

const image = qemu.debian?.[debianSpecId(PACKAGES)];
if (!image || !("dir" in image)) throw new Error(`no Debian image: ${image ? image.error : "not prepared"}`);
const snapshots = join(image.dir, "snapshots");
const before = new Set(existsSync(snapshots) ? readdirSync(snapshots) : []);

// An unused kernel word: a shape of its own, so the save below is a real one.
const options: NodeOptions = { backend: "qemu", image: { packages: PACKAGES }, append: `hp.bench=${randomBytes(4).toString("hex")}` };
const toShell: number[] = [];
const toRunning: number[] = [];
for (let i = 0; i < BOOTS; i++) {
  const m = new QemuMachine("deb", options, ctx(`cold${i}`), { ...qemu, snapshotBoot: false }, undefined);
  t = performance.now();
  await m.start();
  toShell.push(performance.now() - t);
  await m.succeed("systemctl is-system-running --wait || true");
  toRunning.push(performance.now() - t);
  await m.cleanup();
}
row("cold boot to the backdoor shell", toShell);
row("cold boot to is-system-running = running", toRunning);

const saver = new QemuMachine("deb", options, ctx("save"), qemu, undefined);
t = performance.now();
await saver.start();
row("first boot of a shape: boot, wait until running, save the snapshot", [performance.now() - t]);
await saver.cleanup();

const restores: number[] = [];
let last: QemuMachine | undefined;
for (let i = 0; i < RESTORES; i++) {
  last = new QemuMachine("deb", options, ctx(`r${i}`), qemu, undefined);
  t = performance.now();
  await last.start();
  restores.push(performance.now() - t);
  if (i < RESTORES - 1) await last.cleanup();
}
row("restored from the snapshot, to the backdoor shell", restores);

const rt: number[] = [];
for (let i = 0; i < COMMANDS; i++) {
  t = performance.now();
  await last!.succeed("true");
  rt.push(performance.now() - t);
}
rt.sort((a, b) => a - b);
await last!.cleanup();

// The snapshot this bench saved (its shape is its own): removed, the others stay.
for (const f of readdirSync(snapshots).filter((f) => !before.has(f))) rmSync(join(snapshots, f), { force: true });
printTable(`bench/debian-vm: Debian 12 guest, qemu (${qemu.accel}), 512 MiB, 1 core`, ["what", "samples", "median s", "max s"], rows);
console.log(`\nsucceed("true") on the restored Debian guest: median ${fmt(percentile(rt, 0.5), 2)} ms, p95 ${fmt(percentile(rt, 0.95), 2)} ms (${COMMANDS} commands)`);
rmSync(scratch, { recursive: true, force: true });
