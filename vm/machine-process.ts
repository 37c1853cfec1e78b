import { execa, type ResultPromise } from "execa";
import { constants } from "node:os";
import type { MachineContext } from "./machine.ts";
import { withParentDeathSignal } from "./parent-death.ts";

export interface MachineProcess {
  proc: ResultPromise;
  pid: number;
  /** Resolves once the process is gone, with how it ended: "exit code 0", "signal 9". */
  exited: Promise<string>;
}

/**
 * Start the process that is a machine (a sandbox shell, QEMU, a start script): in its own
 * process group (freeze, crash and the main thread's ledger signal the whole group), dying
 * with the thread that started it, reported to the ledger while it lives, its output fed
 * to the machine's console.
 */
export function spawnMachineProcess(
  ctx: MachineContext,
  machine: string,
  argv: string[],
  o: { cwd: string; env?: Record<string, string>; stdin: "pipe" | "ignore"; onOutput: (chunk: Buffer) => void; outputStreams: ("stdout" | "stderr")[] },
): MachineProcess {
  const [cmd, ...args] = withParentDeathSignal(argv);
  const proc = execa(cmd!, args, {
    cwd: o.cwd,
    env: o.env,
    extendEnv: true,
    detached: true,
    stdin: o.stdin,
    stdout: "pipe",
    stderr: "pipe",
    buffer: false,
    reject: false,
    cleanup: true,
  });
  const pid = proc.pid;
  if (pid === undefined) throw new Error(`machine ${machine}: could not spawn ${argv[0]}`);
  ctx.trackProcess(machine, pid, true);
  for (const name of o.outputStreams) proc[name]!.on("data", o.onOutput);
  const exited = proc.then((r) => {
    ctx.trackProcess(machine, pid, false);
    return r.signal ? `signal ${constants.signals[r.signal] ?? r.signal}` : `exit code ${r.exitCode}`;
  });
  return { proc, pid, exited };
}
