// bench/dispatch-refs: the no-machine dispatch cost of several git revisions, measured in the
// same bench run and taken in turns (so the shared host's load falls on each alike), each
// against the first. The way to show what one change to the dispatch path bought.
//   HP_BENCH_REFS="main HEAD ." npm run bench:dispatch-refs   (default: HEAD~1 HEAD; "." is the working tree)
//   knobs: HP_BENCH_RUNS (2000), HP_BENCH_ROUNDS (3), HP_BENCH_JOBS (2), HP_BENCH_LOGS (tmpfs; disk)
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { knob, SMOKE } from "./smoke.ts";
import { scratchDir } from "./scratch.ts";
import { fmt, printTable } from "./table.ts";

const repo = fileURLToPath(new URL("../", import.meta.url));
// At smoke scale only the working tree (CI's checkout may have no history).
const refs = (process.env.HP_BENCH_REFS || (SMOKE ? "." : "HEAD~1 HEAD")).split(/\s+/).filter(Boolean);
const runs = knob("HP_BENCH_RUNS", 2000, 100);
const rounds = knob("HP_BENCH_ROUNDS", 3, 1);
const jobs = knob("HP_BENCH_JOBS", 2, 2);
const scratch = scratchDir("hp-bench-refs-");
// HP_BENCH_LOGS=disk puts the run logs on /var/tmp's file system instead of tmpfs.
const onDisk = process.env.HP_BENCH_LOGS === "disk" || !existsSync("/dev/shm");
const logs = scratchDir("hp-bench-refs-", onDisk ? "/var/tmp" : "/dev/shm");

/** Each ref's sources, as committed (`git archive`), with this checkout's node_modules; "." is the working tree. */
const checkouts = refs.map((ref) => {
  if (ref === ".") return { ref: "working tree", dir: repo };
  const sha = execFileSync("git", ["rev-parse", "--short", ref], { cwd: repo, encoding: "utf8" }).trim();
  const dir = join(scratch, sha);
  mkdirSync(dir);
  execFileSync("sh", ["-c", `git archive ${sha} | tar -x -C ${dir}`], { cwd: repo });
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
  return { ref: `${ref} (${sha})`, dir };
});

interface Sample {
  status: number;
  passed: number;
  totalMs: number;
  steadyWallMs: number;
  steadyMainCpuMs: number;
  steadyProcCpuMs: number;
}
const samples = checkouts.map(() => [] as Sample[]);
for (let round = 0; round < rounds; round++) {
  for (const [i, c] of checkouts.entries()) {
    const out = join(logs, `${i}-${round}`);
    const r = await execa("node", ["--import", "tsx", fileURLToPath(new URL("./dispatch-child.ts", import.meta.url)), c.dir, String(runs), String(jobs), out], { cwd: c.dir });
    rmSync(out, { recursive: true, force: true });
    const s = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Sample;
    if (s.status !== 0 || s.passed !== runs) throw new Error(`${c.ref}: status ${s.status}, ${s.passed}/${runs} passed`);
    samples[i]!.push(s);
  }
}
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const firstWall = median(samples[0]!.map((s) => s.steadyWallMs));
const firstCpu = median(samples[0]!.map((s) => s.steadyMainCpuMs));
printTable(
  `bench/dispatch-refs: ${runs} no-machine runs at --jobs ${jobs}, logs on ${onDisk ? "disk (/var/tmp)" : "tmpfs"}, medians of ${rounds} rounds taken in turns; steady = after the first tenth`,
  ["revision", "steady runs/s", "steady ms/run (wall)", "vs first", "main thread CPU ms/run", "vs first", "process CPU ms/run", "runs/s incl. startup"],
  checkouts.map((c, i) => {
    const wall = median(samples[i]!.map((s) => s.steadyWallMs));
    const cpu = median(samples[i]!.map((s) => s.steadyMainCpuMs));
    return [c.ref, fmt(1000 / wall, 0), fmt(wall, 3), `${fmt(wall / firstWall, 2)}x`, fmt(cpu, 3), `${fmt(cpu / firstCpu, 2)}x`, fmt(median(samples[i]!.map((s) => s.steadyProcCpuMs)), 3), fmt(median(samples[i]!.map((s) => (runs / s.totalMs) * 1000)), 0)];
  }),
);
