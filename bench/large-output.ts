// bench/vm's large-output row: succeed() returning 64 MiB on the local backend (issue #17:
// the backdoor shell's reader was quadratic: 40 MB took 19 s). Alone: node --import tsx bench/large-output.ts
import { rmSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { LocalMachine } from "../vm/local/local-machine.ts";
import { knob } from "./smoke.ts";
import { scratchDir } from "./scratch.ts";
import { fmt, printTable } from "./table.ts";

export const OUTPUT_MIB = knob("HP_BENCH_OUTPUT_MIB", 64, 4);

/** One row: MiB, seconds, MB/s (10^6 bytes a second; the target is 50). */
export async function largeOutputRow(): Promise<(string | number)[]> {
  const scratch = scratchDir("hp-bout-");
  const m = new LocalMachine("m", {}, {
    log: () => {},
    trackProcess: () => {},
    consolePath: (n) => join(scratch, `${n}.console.log`),
    stateDir: (n) => join(scratch, n),
    outputDir: join(scratch, "out"),
  });
  try {
    await m.start();
    const bytes = OUTPUT_MIB * 2 ** 20;
    const t = performance.now();
    const out = await m.succeed(`head -c ${bytes} /dev/zero | tr '\\0' x`);
    const s = (performance.now() - t) / 1000;
    if (out.length !== bytes) throw new Error(`got ${out.length} bytes, wanted ${bytes}`);
    return ["local sandbox", OUTPUT_MIB, fmt(s, 2), fmt(bytes / 1e6 / s, 1)];
  } finally {
    await m.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  }
}

export function printLargeOutput(row: (string | number)[]): void {
  printTable(`bench/vm: succeed() returning ${OUTPUT_MIB} MiB of output (target >= 50 MB/s)`, ["machine", "MiB", "seconds", "MB/s"], [row]);
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) printLargeOutput(await largeOutputRow());
