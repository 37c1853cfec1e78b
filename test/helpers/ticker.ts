// A shell loop that appends a line to a file every 50 ms: what freeze and thaw tests watch.
// Its command line carries this test run's mark and its name, so that its shells can be
// found in /proc (a frozen machine's are stopped: state T) and the window of a check that
// nothing happens can be measured in ticks of one that runs.
import { readFile, readdir } from "node:fs/promises";
import { TEST_MARK } from "./machine-context.ts";

/** The loop, for `bash -c` (a session's command, or a subshell it leaves running): appends to `path`. */
export const tickerLoop = (name: string, path: string): string => `: ${TEST_MARK} ${name}; while :; do echo t >> ${path}; sleep 0.05; done`;

/** The shells running tickerLoop(name), with their state (R, S, T…). */
export async function tickerShells(name: string): Promise<{ pid: number; state: string }[]> {
  const out: { pid: number; state: string }[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = (await readFile(`/proc/${d}/cmdline`, "utf8")).split("\0");
      // A shell's; an ssh client on the host carries the same command in its arguments.
      if (!/(^|\/)(ba)?sh$/.test(argv[0]!) || !argv.some((a) => a.includes(`${TEST_MARK} ${name};`))) continue;
      // The state follows the command's name in parentheses (which may itself hold spaces).
      const stat = await readFile(`/proc/${d}/stat`, "utf8");
      out.push({ pid: Number(d), state: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]! });
    } catch {
      // It ended while we looked.
    }
  }
  return out;
}
