// The benches' smoke scale: HP_BENCH_SMOKE=1 runs every bench through all its tables in
// seconds (qemu benches with one or two boots), so CI proves each still runs
// (test/benches-smoke.test.ts). The figures at that scale mean nothing.
export const SMOKE = process.env.HP_BENCH_SMOKE === "1";

/** A bench's knob: the environment variable if set, else its smoke or full-scale default. */
export function knob(name: string, full: number, smoke: number): number {
  const set = process.env[name];
  if (set === undefined || set === "") return SMOKE ? smoke : full;
  const n = Number(set);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${set}: not a number >= 0`);
  return n;
}
