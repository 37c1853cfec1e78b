// Where a restore's time goes (issue #26), for bench/vm (haltpoint's guest) and bench/debian
// (a Debian guest): each step of QemuMachine's start from a snapshot, as ms from spawning
// QEMU (QemuMachine.startSteps), then the first command; beside it the floor, a bare QEMU of
// the same machine type started with -S until its QMP answers, measured in the same run.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { QemuMachine, StartSteps } from "../vm/qemu/qemu-machine.ts";
import type { QemuRuntime } from "../vm/qemu/qemu-runtime.ts";
import { QmpClient } from "../vm/qemu/qmp.ts";
import { RESEED_FILE, reseedWaitMs } from "../vm/image/guest-personalize.ts";
import { QEMU_BINARY } from "../vm/qemu/qemu-argv.ts";
import { fmt, percentile, printTable } from "./table.ts";

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.5);

/**
 * How haltpoint restored before each change of issue #26 (with `before`), every change on top of
 * the one before; the last is haltpoint as it is. `perlClock`: the guest has no busybox (a Debian
 * guest), so the perl clock helper is a change of its own (for haltpoint's guest it changes nothing).
 */
export function restoreWays(qemu: QemuRuntime, before: boolean, o: { perlClock?: boolean } = {}): { label: string; rt: QemuRuntime }[] {
  // Until QMP was tried every 2 ms, every start looked for QEMU's QMP socket every 50 ms.
  const was = (a: QemuRuntime["restoreAsBefore"]) => ({ ...qemu, restoreAsBefore: { ...a, qmpRetryMs: 50, ...(o.perlClock ? { noPerlClock: true } : {}) } });
  const qmpNow = "+ QMP tried every 2 ms, not 50";
  return [
    ...(before
      ? [
          { label: "before: RAM streamed (zstd), identity by programs", rt: was({ streamedRam: true, identity: "programs" }) },
          { label: "+ RAM mapped", rt: was({ identity: "programs" }) },
          { label: "+ identity by builtins", rt: was({ identity: "own-round-trip" }) },
          { label: "+ identity sent with the setup", rt: was({ identity: "with-setup" }) },
          { label: "+ shell prepared before the save", rt: was({}) },
          ...(o.perlClock ? [{ label: qmpNow, rt: { ...qemu, restoreAsBefore: { noPerlClock: true } } }] : []),
        ]
      : []),
    o.perlClock ? { label: "+ the clock set by a waiting perl (now)", rt: qemu } : { label: `${qmpNow} (now)`, rt: qemu },
  ];
}

/** One way of each snapshot the ways restore (the RAM's layout and the shell's prep make a snapshot of their own): start one of each first, so that each is saved if missing. */
export const oneWayPerSnapshot = <W extends { rt: QemuRuntime }>(ways: W[]): W[] => {
  const seen = new Set<string>();
  return ways.filter((w) => {
    const key = `${!!w.rt.restoreAsBefore?.streamedRam} ${!!w.rt.restoreAsBefore?.noPerlClock}`;
    return !seen.has(key) && !!seen.add(key);
  });
};

/** ms from spawning a bare QEMU (-S, same machine type, accelerator and memory) until its QMP answers (its socket tried every 2 ms). */
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
    // The CRNG wait, which the identity command leaves in a file (guest-personalize.ts).
    const reseedWait = m.startSteps.reseedWait ?? reseedWaitMs(await m.succeed(`cat ${RESEED_FILE} 2>/dev/null || true`));
    // A bench's other rows measured on this guest (at smoke scale one guest serves several).
    await alsoServe?.(m, started);
    const s = m.startSteps;
    if (s.loaded === undefined) throw new Error(`${m.name} did not start from a snapshot`);
    // startSteps count from the spawn; start() returns right after the identity step, so
    // what came before the spawn (sockets, the boot plan) is the difference.
    return { ...s, reseedWait, beforeSpawn: started - (s.identity ?? started), first };
  } finally {
    await m.cleanup();
  }
}

/** One way of restoring (bench/vm and bench/debian measure the one before a change beside it) and its samples. */
export interface RestoreVariant {
  label: string;
  samples: RestoreSample[];
}

/**
 * Print where the restores' time goes, one column per variant (medians, ms from spawn and the
 * step's own), beside the bare QEMU start; returns each variant's start() → first command /
 * bare QEMU start.
 */
export function printRestoreBreakdown(title: string, variants: RestoreVariant[], bare: number[], target: number): number[] {
  const bareMs = median(bare);
  const rows: (string | number)[][] = [];
  const cells = (f: (v: RestoreVariant) => string) => variants.map(f);
  const at = (v: RestoreVariant, k: keyof RestoreSample) => median(v.samples.map((s) => s[k]).filter((x): x is number => x !== undefined));
  const steps: [string, keyof RestoreSample][] = [
    ["spawn → QMP answers", "qmp"],
    ["incoming migration: state read, decompressed, loaded (RAM mapped or streamed)", "loaded"],
    ["digest checked, guest running (cont)", "running"],
    ["backdoor shell answers its first command (setup + `true`, or the identity: with the setup, or alone in the prepared shell)", "shell"],
    ["identity applied (clock, hostname, hosts, MACs, CRNG reseeded) = `restored in`", "identity"],
  ];
  const prev = new Map<RestoreVariant, number>();
  for (const [what, k] of steps) {
    rows.push([
      what,
      ...cells((v) => {
        const x = at(v, k);
        const p = prev.get(v) ?? 0;
        prev.set(v, x);
        return `${fmt(x, 0)} (+${fmt(x - p, 0)})`;
      }),
    ]);
  }
  rows.push(["  of which: waiting for the CRNG reseed (in the guest, 10 ms resolution)", ...cells((v) => `(${fmt(at(v, "reseedWait"), 0)})`)]);
  const firstOf = (v: RestoreVariant) => median(v.samples.map((s) => s.first - s.beforeSpawn));
  rows.push(["first command answered", ...cells((v) => `${fmt(firstOf(v), 0)} (+${fmt(firstOf(v) - (prev.get(v) ?? 0), 0)})`)]);
  rows.push(["(before the spawn: sockets, boot plan; not in the figures above)", ...cells((v) => `(${fmt(at(v, "beforeSpawn"), 0)})`)]);
  rows.push([`bare QEMU: same machine type, -S, until QMP answers, its socket tried every 2 ms (median of ${bare.length}, taken in turns)`, ...cells(() => fmt(bareMs, 0))]);
  const ratios = variants.map((v) => at(v, "first") / bareMs);
  rows.push(["start() → first command, ms", ...cells((v) => fmt(at(v, "first"), 0))]);
  rows.push([`start() → first command / bare QEMU start (target ≤ ${target}x)`, ...ratios.map((r) => `${fmt(r, 1)}x`)]);
  if (variants.length > 1) rows.push(["vs the column before", "", ...ratios.slice(1).map((r, i) => `${fmt(r / ratios[i]!, 2)}x`)]);
  printTable(`${title} (medians of ${variants.map((v) => v.samples.length).join("/")} restores; ms from spawn (+ the step's own))`, ["step", ...variants.map((v) => v.label)], rows);
  return ratios;
}
