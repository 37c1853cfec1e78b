// Where a restore's time goes (issue #26), for bench/vm (haltpoint's guest) and bench/debian
// (a Debian guest): each step of QemuMachine's start from a snapshot, as ms from spawning
// QEMU (QemuMachine.startSteps), then the first command; beside it the floor, a bare QEMU of
// the same machine type started with -S until its QMP answers, measured in the same run.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { QemuMachine, StartSteps } from "../vm/qemu/qemu-machine.ts";
import { QmpClient } from "../vm/qemu/qmp.ts";
import { QEMU_BINARY } from "../vm/qemu/qemu-argv.ts";
import { fmt, percentile, printTable } from "./table.ts";

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.5);

/** ms from spawning a bare QEMU (-S, same machine type, accelerator and memory) until its QMP answers. */
export async function bareQemuStart(dir: string, o: { accel: string; memoryMiB: number }): Promise<number> {
  mkdirSync(dir, { recursive: true });
  const qmpPath = join(dir, "qmp.sock");
  const t0 = performance.now();
  const child = spawn(QEMU_BINARY, ["-nodefaults", "-no-user-config", "-machine", "pc", "-accel", o.accel === "kvm" ? "kvm" : "tcg,thread=multi", "-m", String(o.memoryMiB), "-display", "none", "-S", "-chardev", `socket,id=qmp,path=${qmpPath},server=on,wait=off`, "-mon", "chardev=qmp,mode=control"], { stdio: "ignore" });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 30_000 });
    const ms = performance.now() - t0;
    await qmp.quit().catch(() => child.kill("SIGKILL"));
    return ms;
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
    await exited;
  }
}

/** One restore's steps (ms from spawn), `beforeSpawn` (start() called → QEMU spawned) and `first`: start() called → the first command answered. */
export type RestoreSample = StartSteps & { beforeSpawn: number; first: number };

/** Start `make()`'s machine (restored from a snapshot), run one command, clean it up; its steps. */
export async function sampleRestore(make: () => QemuMachine, alsoServe?: (m: QemuMachine, startMs: number) => Promise<void>): Promise<RestoreSample> {
  const m = make();
  try {
    const t0 = performance.now();
    await m.start();
    const started = performance.now() - t0;
    await m.succeed("true");
    const first = performance.now() - t0;
    // A bench's other rows measured on this guest (at smoke scale one guest serves several).
    await alsoServe?.(m, started);
    const s = m.startSteps;
    if (s.loaded === undefined) throw new Error(`${m.name} did not start from a snapshot`);
    // startSteps count from the spawn; start() returns right after the identity step, so
    // what came before the spawn (sockets, the boot plan) is the difference.
    return { ...s, beforeSpawn: started - (s.identity ?? started), first };
  } finally {
    await m.cleanup();
  }
}

/** Print the breakdown of `samples` beside the bare QEMU start; returns restore→first command / bare. */
export function printRestoreBreakdown(title: string, samples: RestoreSample[], bare: number[], target: number): number {
  const at = (k: keyof RestoreSample) => median(samples.map((s) => s[k]).filter((v): v is number => v !== undefined));
  const rows: (string | number)[][] = [];
  let prev = 0;
  const step = (what: string, k: keyof RestoreSample) => {
    const v = at(k);
    rows.push([what, fmt(v, 0), fmt(v - prev, 0)]);
    prev = v;
  };
  step("spawn → QMP answers", "qmp");
  step("incoming migration: snapshot read, decompressed, loaded", "loaded");
  step("digest checked, guest running (cont)", "running");
  step("backdoor shell answers (its setup, one round trip)", "shell");
  step("identity applied (clock, hostname, hosts, MACs, CRNG reseeded) = `restored in`", "identity");
  rows.push(["  of which: waiting for the CRNG reseed (in the guest)", "", fmt(at("reseedWait"), 0)]);
  const first = median(samples.map((s) => s.first - s.beforeSpawn));
  rows.push(["first command answered", fmt(first, 0), fmt(first - prev, 0)]);
  rows.push(["(before the spawn: sockets, boot plan; not in the figures above)", "", fmt(at("beforeSpawn"), 0)]);
  const bareMs = median(bare);
  rows.push([`bare QEMU: same machine type, -S, until QMP answers (${bare.length} starts)`, fmt(bareMs, 0), "—"]);
  const whole = at("first");
  const ratio = whole / bareMs;
  rows.push([`start() → first command, ${fmt(whole, 0)} ms, / bare QEMU start (target ≤ ${target}x)`, `${fmt(ratio, 1)}x`, ""]);
  printTable(`${title} (median of ${samples.length} restores)`, ["step", "ms from spawn", "step ms"], rows);
  return ratio;
}
