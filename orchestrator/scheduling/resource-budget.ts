import type { PlannedTest } from "../selection/plan.ts";
import type { BudgetOverrun } from "../../common/failure-kinds.ts";
import { overrunText } from "../reporters/failure-text.ts";

export interface Resources {
  memoryMiB: number;
  cores: number;
}

/**
 * What a run's machines take from the host. Only qemu machines count: a local machine is
 * a process sandbox that takes what it uses, while a guest reserves its RAM and vCPUs.
 */
export function demandOf(test: PlannedTest): Resources {
  let memoryMiB = 0;
  let cores = 0;
  for (const n of test.nodes) {
    if (n.backend !== "qemu") continue;
    memoryMiB += n.memory;
    cores += n.cores;
  }
  return { memoryMiB, cores };
}

/**
 * Admission by memory and cores (--memory, --cores): a run starts only when its machines
 * fit next to those already running, so the host is never overcommitted. Waiters are
 * served in order; a run that can never fit is refused at once.
 */
export class ResourceBudget {
  private used: Resources = { memoryMiB: 0, cores: 0 };
  private waiters: { need: Resources; grant: () => void }[] = [];

  constructor(readonly total: Resources) {}

  /** What of `need` can never fit, or undefined if it can (reporters put it into words). */
  overrun(need: Resources): BudgetOverrun | undefined {
    const over: BudgetOverrun = {};
    if (need.memoryMiB > this.total.memoryMiB) over.memoryMiB = { need: need.memoryMiB, budget: this.total.memoryMiB };
    if (need.cores > this.total.cores) over.cores = { need: need.cores, budget: this.total.cores };
    return over.memoryMiB || over.cores ? over : undefined;
  }

  /** Why `need` can never fit, in words, or undefined if it can. */
  refusal(need: Resources): string | undefined {
    const over = this.overrun(need);
    return over && overrunText(over);
  }

  /** Wait until `need` fits, take it, and return the function that gives it back. */
  async acquire(need: Resources): Promise<() => void> {
    if (need.memoryMiB === 0 && need.cores === 0) return () => {};
    if (this.fits(need) && !this.waiters.length) this.take(need);
    else await new Promise<void>((grant) => this.waiters.push({ need, grant })); // admitWaiters took it for us
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used = { memoryMiB: this.used.memoryMiB - need.memoryMiB, cores: this.used.cores - need.cores };
      this.admitWaiters();
    };
  }

  get inUse(): Resources {
    return { ...this.used };
  }

  get waiting(): number {
    return this.waiters.length;
  }

  private fits(need: Resources): boolean {
    return this.used.memoryMiB + need.memoryMiB <= this.total.memoryMiB && this.used.cores + need.cores <= this.total.cores;
  }

  private take(need: Resources): void {
    this.used = { memoryMiB: this.used.memoryMiB + need.memoryMiB, cores: this.used.cores + need.cores };
  }

  private admitWaiters(): void {
    while (this.waiters.length && this.fits(this.waiters[0]!.need)) {
      const w = this.waiters.shift()!;
      this.take(w.need);
      w.grant();
    }
  }
}
