// bench/bundle: what keeping a breakpoint as a bundle costs, and what reviving one saves.
// For a failing one- and two-guest test (256 MiB haltpoint guests) and a two-Debian-guest one
// (512 MiB, each with a disk): the save time and bundle size (with and without the Debian
// image it stores once) of a CI-like run (--debug-hook, no terminal, CI set), and the time to a console that answers —
// reviving the bundle, against running the test again to the same breakpoint (the baseline:
// what reproducing it costs, when it reproduces at all).   npm run bench:bundle
//   (HP_BENCH_ROUNDS; HP_BENCH_SMOKE=1: one round, the one-guest test only: one save, one revive)
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "node:net";
import { execa } from "execa";
import { knob, SMOKE } from "./smoke.ts";
import { scratchDir } from "./scratch.ts";
import { fmt, printTable } from "./table.ts";

const BIN = fileURLToPath(new URL("../bin/haltpoint.mjs", import.meta.url));
const ROUNDS = knob("HP_BENCH_ROUNDS", 3, 1);
const scratch = scratchDir("hp-bbundle-");
const fixture = (f: string) => fileURLToPath(new URL(`./fixtures/bundle/${f}`, import.meta.url));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Spawn a haltpoint command and resolve with the seconds until its console answers `1+1`; then release it. */
async function secondsToConsole(args: string[], env: Record<string, string> = {}): Promise<number> {
  const t0 = performance.now();
  const child = execa("node", [BIN, ...args], { reject: false, all: true, env: { NO_COLOR: "1", CI: "", ...env }, stdin: "ignore" });
  let out = "";
  child.all!.on("data", (c) => (out += c));
  let id: string | undefined;
  while (!id) {
    id = /HALTED at breakpoint (\d+)/.exec(out)?.[1];
    if (child.exitCode !== null) throw new Error(`ended before halting:\n${out}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise<void>((resolve, reject) => {
    const s = connect(Number(id), "127.0.0.1");
    let got = "";
    let asked = false;
    s.on("data", (d) => {
      got += d;
      if (!asked && /> $/m.test(got)) {
        asked = true;
        got = "";
        s.write("1+1\n");
      } else if (asked && /^2\r?$/m.test(got)) {
        s.destroy();
        resolve();
      }
    });
    s.on("error", reject);
  });
  const seconds = (performance.now() - t0) / 1000;
  await execa("node", [BIN, "release", id], { reject: false });
  await child;
  return seconds;
}

function bytesUnder(dir: string, match: (name: string) => boolean, maybe = false): number {
  if (maybe && !existsSync(dir)) return 0;
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += bytesUnder(p, match);
    else if (match(e.name)) n += statSync(p).size;
  }
  return n;
}

const rows: (string | number)[][] = [];
const tests = [
  ["one-guest.vmtest.ts", 1, "1 haltpoint"],
  ["two-guests.vmtest.ts", 2, "2 haltpoint"],
  ["two-debian.vmtest.ts", 2, "2 Debian"],
] as const;
for (const [file, guests, label] of SMOKE ? tests.slice(0, 1) : tests) {
  const saves: number[] = [];
  let bundle = "";
  // The first save compresses the disk image; later ones copy it from haltpoint's cache of
  // compressed images (vm/qemu/saved-disk.ts), a fresh one per test here.
  const imageCache = join(scratch, `image-cache-${guests}-${label.length}`);
  for (let i = 0; i < ROUNDS; i++) {
    const logDir = join(scratch, `${guests}-${i}`);
    const r = await execa("node", [BIN, "run", fixture(file), "--debug-hook", "--log-dir", logDir], { reject: false, all: true, env: { CI: "true", NO_COLOR: "1", HALTPOINT_BUNDLE_IMAGE_CACHE: imageCache }, stdin: "ignore" });
    const m = /saved as a bundle: (\S+) \([\d.]+ MiB in ([\d.]+) s[;)]/.exec(r.all);
    if (!m) throw new Error(`no bundle:\n${r.all}`);
    saves.push(Number(m[2]));
    bundle = m[1]!;
  }
  const total = bytesUnder(bundle, () => true) / 2 ** 20;
  const images = bytesUnder(join(bundle, "images"), () => true, true) / 2 ** 20;
  const state = bytesUnder(bundle, (n) => n === "state.zst") / 2 ** 20 / guests;
  const revive: number[] = [];
  const rerun: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    revive.push(await secondsToConsole(["revive", bundle, "--log-dir", join(scratch, `revive-${guests}-${i}`)]));
    rerun.push(await secondsToConsole(["run", fixture(file), "--debug-hook", "--log-dir", join(scratch, `rerun-${guests}-${i}`)]));
  }
  rows.push([label, fmt(saves[0]!), fmt(median(saves.slice(1).length ? saves.slice(1) : saves)), fmt(total, 1), fmt(total - images, 1), fmt(state, 1), fmt(median(revive)), fmt(median(rerun)), `${fmt(median(rerun) / median(revive), 1)}x`]);
}
printTable(
  `Breakpoint bundles, TCG, median of ${ROUNDS} (rerun: the same test run again with --debug-hook to its breakpoint, from a snapshot boot; without image: the bundle less the Debian image it stores once)`,
  ["guests", "first save s", "save again s", "bundle MiB", "without image MiB", "state MiB per guest", "revive → console s", "rerun → console s", "rerun / revive"],
  rows,
);
rmSync(scratch, { recursive: true, force: true });
