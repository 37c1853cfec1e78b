import { BroadcastChannel } from "node:worker_threads";
import type { AheadProcess } from "../../common/events.ts";

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

  /**
   * Keep the processes of machines taken ahead (worker/machines-ahead.ts) that their workers
   * post on `channel` before a run takes them: one entry per worker thread, which no run's end
   * touches; killAll kills what is left. Returns how to stop listening.
   */
  listenForAhead(channel: string): () => void {
    const c = new BroadcastChannel(channel);
    c.unref();
    c.onmessage = (e) => {
      const p = (e as { data: AheadProcess }).data;
      if (p.alive) this.add(aheadEntry(p.worker), p.pid, p.machine);
      else this.remove(aheadEntry(p.worker), p.pid);
    };
    return () => c.close();
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

/** The ledger entry of a worker thread's machines taken ahead (every run key has a #, this one none). */
const aheadEntry = (worker: number): string => `machines taken ahead @${worker}`;

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
