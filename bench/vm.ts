// bench/vm: boot-to-backdoor time and command round trip on real guests (under the
// accelerator haltpoint chooses here), next to the local backend; and the throughput of
// 8 qemu test runs at --jobs 1 and 2.   npm run bench:vm
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { prepareQemu } from "../orchestrator/prepare-qemu.ts";
import { applyV8Flags } from "../orchestrator/v8-flags.ts";
import { runCommand } from "../orchestrator/run-command.ts";
import { LocalMachine } from "../vm/local/local-machine.ts";
import { QemuMachine } from "../vm/qemu/qemu-machine.ts";
import type { BaseMachine, MachineContext } from "../vm/machine.ts";
import { fmt, percentile, printTable } from "./table.ts";
import { largeOutputRow, printLargeOutput } from "./large-output.ts";

applyV8Flags(); // as the CLI runs (orchestrator/v8-flags.ts)

const COMMANDS = Number(process.env.HP_BENCH_COMMANDS ?? 500);
const BOOTS = Number(process.env.HP_BENCH_BOOTS ?? 5);
const RUNS = 8;
const scratch = mkdtempSync(join("/var/tmp", "hp-bvm-"));
const ctx = (name: string): MachineContext => ({
  log: () => {},
  trackProcess: () => {},
  consolePath: (m) => join(scratch, name, `${m}.console.log`),
  stateDir: (m) => join(scratch, name, m),
  outputDir: join(scratch, name, "out"),
});

const qemu = await prepareQemu("auto", (l) => console.error(l));

async function measure(label: string, make: (i: number) => BaseMachine): Promise<(string | number)[]> {
  const boots: number[] = [];
  let m: BaseMachine | undefined;
  for (let i = 0; i < BOOTS; i++) {
    const machine = make(i);
    const t = performance.now();
    await machine.start();
    boots.push(performance.now() - t);
    if (i < BOOTS - 1) await machine.cleanup();
    else m = machine;
  }
  for (let i = 0; i < 20; i++) await m!.succeed("true");
  const rt: number[] = [];
  for (let i = 0; i < COMMANDS; i++) {
    const t = performance.now();
    await m!.succeed("true");
    rt.push(performance.now() - t);
  }
  await m!.cleanup();
  boots.sort((a, b) => a - b);
  rt.sort((a, b) => a - b);
  return [label, BOOTS, fmt(percentile(boots, 0.5), 0), fmt(boots.at(-1)!, 0), COMMANDS, fmt(percentile(rt, 0.5), 2), fmt(percentile(rt, 0.95), 2)];
}

const rows = [
  await measure(`qemu (${qemu.accel}), haltpoint guest`, (i) => new QemuMachine("vm", { memory: 256 }, ctx(`q${i}`), qemu, undefined)),
  await measure("local sandbox", (i) => new LocalMachine("m", {}, ctx(`l${i}`))),
];
printTable(
  "bench/vm: boot to backdoor shell, and succeed(\"true\") round trip",
  ["machine", "boots", "boot median ms", "boot max ms", "commands", "succeed median ms", "succeed p95 ms"],
  rows,
);

printLargeOutput(await largeOutputRow());

const fixture = fileURLToPath(new URL("./fixtures/vm/one-qemu.vmtest.ts", import.meta.url));
const through: (string | number)[][] = [];
const wall: Record<number, number> = {};
for (const jobs of [1, 2]) {
  let passed = 0;
  const t = performance.now();
  const status = await runCommand({
    paths: [fixture], jobs, backend: "qemu", repeat: RUNS, untilFail: false, quiet: true, abortGrace: 10,
    logDir: join(scratch, `logs-${jobs}`), terminal: false,
    reporters: [{ onRunEnd: (r) => void (r.outcome === "passed" && passed++) }],
  });
  wall[jobs] = performance.now() - t;
  if (status !== 0 || passed !== RUNS) throw new Error(`throughput run at --jobs ${jobs}: status ${status}, ${passed}/${RUNS} passed`);
  through.push([jobs, RUNS, fmt(wall[jobs] / 1000, 2), fmt((RUNS / wall[jobs]) * 60000, 1), jobs === 1 ? "1.00x" : `${fmt(wall[1]! / wall[jobs], 2)}x`]);
}
printTable(`bench/vm: ${RUNS} runs of a one-guest test (boot, one command, teardown)`, ["--jobs", "runs", "wall s", "runs/min", "speed-up vs --jobs 1"], through);
rmSync(scratch, { recursive: true, force: true });
