import { execaSync } from "execa";

let setprivWorks: boolean | undefined;

/**
 * Prefix a command with `setpriv --pdeathsig KILL` (util-linux): the kernel then kills the
 * process when the thread that started it dies, so a crashed worker or an orchestrator
 * killed with SIGKILL leaves no guest or sandbox behind. Without setpriv, unchanged (the
 * main thread's process ledger still cleans up every other way a run can end).
 */
export function withParentDeathSignal(argv: string[]): string[] {
  setprivWorks ??= execaSync("setpriv", ["--pdeathsig", "KILL", "--", "true"], { reject: false }).exitCode === 0;
  return setprivWorks ? ["setpriv", "--pdeathsig", "KILL", "--", ...argv] : argv;
}
