/**
 * Every child process (sandbox shell, QEMU) that a worker reported, by run. If a worker
 * dies (crash, `process.exit()`, out of memory, an abort) or the orchestrator exits, what
 * it left behind is killed from here, so no machine outlives its test or the run.
 */
export class ProcessLedger {
  private byRun = new Map<string, Map<number, string>>();

  add(run: string, pid: number, machine: string): void {
    let m = this.byRun.get(run);
    if (!m) this.byRun.set(run, (m = new Map()));
    m.set(pid, machine);
  }

  remove(run: string, pid: number): void {
    this.byRun.get(run)?.delete(pid);
  }

  /** Kill what is left of one run; returns the machines that still had a process. */
  killRun(run: string): string[] {
    const m = this.byRun.get(run);
    this.byRun.delete(run);
    if (!m) return [];
    const killed: string[] = [];
    for (const [pid, machine] of m) if (killGroup(pid)) killed.push(machine);
    return killed;
  }

  /** Synchronous, so it can run from process.on("exit"). */
  killAll(): void {
    for (const run of [...this.byRun.keys()]) this.killRun(run);
  }

  get size(): number {
    let n = 0;
    for (const m of this.byRun.values()) n += m.size;
    return n;
  }
}

function killGroup(pid: number): boolean {
  let alive = false;
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, "SIGCONT"); // a frozen group must wake to die promptly
      process.kill(target, "SIGKILL");
      alive = true;
    } catch {
      /* already gone */
    }
  }
  return alive;
}
