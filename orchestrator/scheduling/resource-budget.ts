import type { PlannedTest } from "../selection/plan.ts";
import type { BudgetOverrun } from "../../common/failure-kinds.ts";

/** What a run's qemu machines take from the host. */
export interface Resources {
  memoryMiB: number;
  /** vCPUs: the sum of the machines' `cores`. */
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
 * vCPUs admitted per host core by default (--cpu-overcommit): chosen by bench/admission.ts,
 * see docs/admission.md for the table and the reason.
 */
export const DEFAULT_CPU_OVERCOMMIT = 2;

export interface BudgetLimits {
  /** Runs at once (--jobs): every run, local or qemu, takes one slot. */
  jobs: number;
  /** Memory qemu machines may take at once (--memory): a hard limit. */
  memoryMiB: number;
  /** Host cores given to qemu machines (--cores). */
  cores: number;
  /** vCPUs admitted per core (--cpu-overcommit): a vCPU is a QEMU thread, not a reserved core. */
  cpuOvercommit: number;
  /**
   * How many later runs may start ahead of a waiting run before it reserves what it waits
   * for (default: `jobs`, one turnover of every run slot). See docs/admission.md.
   */
  passLimit?: number;
}

/** What a started run holds: give its run slot back while it is halted, everything at its end. */
export interface Lease {
  /** Give back the run slot only (a halted test keeps its machines, so its memory and vCPUs). */
  releaseSlot(): void;
  /** Give back everything still held. Idempotent. */
  release(): void;
}

interface Waiter {
  need: Resources;
  /** Later runs that started while this one waited. */
  passedBy: number;
  grant: () => void;
}

/** Which kinds of room a reserving waiter is short of (later runs may not take them). */
interface Shortage {
  slot: boolean;
  memory: boolean;
  cores: boolean;
}

/**
 * Admission by run slots, memory and vCPUs (--jobs, --memory, --cores × --cpu-overcommit).
 *
 * - Memory is a hard limit: a run that needs more than --memory is refused at once (overrun).
 * - vCPUs are never refused: a run that needs more than the whole vCPU budget runs alone,
 *   started only when no other qemu run holds anything, and nothing qemu starts beside it.
 * - Waiters are looked at oldest first, and a later run that fits starts while an older one
 *   waits (backfilling: no idle core behind a big test). Once `passLimit` later runs have
 *   started ahead of a waiter, it reserves: from then on no later run may take any kind of
 *   room it is short of, so what frees up goes to it and it starts after at most the runs
 *   already going end (no starvation). A later run that needs none of that room (a local
 *   test while a guest waits for vCPUs) still starts.
 */
export class ResourceBudget {
  private used = { slots: 0, memoryMiB: 0, cores: 0 };
  private waiters: Waiter[] = [];
  /** vCPUs that may run at once. */
  readonly vcpus: number;
  readonly passLimit: number;

  constructor(readonly limits: BudgetLimits) {
    this.vcpus = limits.cores * limits.cpuOvercommit;
    this.passLimit = limits.passLimit ?? limits.jobs;
  }

  /** What of `need` can never fit (memory only: vCPUs are never refused), or undefined if it can. */
  overrun(need: Resources): BudgetOverrun | undefined {
    if (need.memoryMiB <= this.limits.memoryMiB) return undefined;
    return { memoryMiB: { need: need.memoryMiB, budget: this.limits.memoryMiB } };
  }

  /** Does `need` exceed the whole vCPU budget, so that it runs with no other qemu run beside it? */
  runsAlone(need: Resources): boolean {
    return need.cores > this.vcpus;
  }

  /**
   * Wait until `need` (plus a run slot) may start, take it, and return what gives it back;
   * undefined if `signal` aborts first (admission stopped: the waiter leaves the line).
   */
  async acquire(need: Resources, signal?: AbortSignal): Promise<Lease | undefined> {
    if (this.overrun(need)) throw new Error(`ResourceBudget.acquire: ${need.memoryMiB} MiB can never fit (check overrun first)`);
    if (signal?.aborted) return undefined;
    let grant!: () => void;
    const granted = new Promise<boolean>((r) => (grant = () => r(true)));
    const w: Waiter = { need, passedBy: 0, grant };
    this.waiters.push(w);
    this.admitWaiters();
    const leave = (): void => {
      const i = this.waiters.indexOf(w);
      if (i < 0) return; // granted already
      this.waiters.splice(i, 1);
      // Those behind it may fit now that it no longer reserves.
      this.admitWaiters();
      grantedOrLeft(false);
    };
    let grantedOrLeft!: (v: boolean) => void;
    const left = new Promise<boolean>((r) => (grantedOrLeft = r));
    signal?.addEventListener("abort", leave, { once: true });
    const ok = await Promise.race([granted, left]);
    signal?.removeEventListener("abort", leave);
    if (!ok) return undefined;
    let slotHeld = true;
    let held = true;
    const releaseSlot = (): void => {
      if (!slotHeld) return;
      slotHeld = false;
      this.used.slots--;
      this.admitWaiters();
    };
    return {
      releaseSlot,
      release: () => {
        if (!held) return;
        held = false;
        if (slotHeld) {
          slotHeld = false;
          this.used.slots--;
        }
        this.used.memoryMiB -= need.memoryMiB;
        this.used.cores -= need.cores;
        this.admitWaiters();
      },
    };
  }

  get inUse(): { slots: number } & Resources {
    return { ...this.used };
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** What `need` lacks to start now (all false: it fits). */
  private shortage(need: Resources): Shortage {
    const usesQemu = need.cores > 0 || need.memoryMiB > 0;
    return {
      slot: this.used.slots + 1 > this.limits.jobs,
      memory: this.used.memoryMiB + need.memoryMiB > this.limits.memoryMiB,
      // Running alone: only when no other qemu run holds vCPUs (and none starts beside it,
      // since the budget is then overfull).
      cores: usesQemu && (this.runsAlone(need) ? this.used.cores > 0 : this.used.cores + need.cores > this.vcpus),
    };
  }

  /** Start every waiter that may start now, oldest first (see the class comment for the rule). */
  private admitWaiters(): void {
    const reserved: Shortage = { slot: false, memory: false, cores: false };
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i]!;
      const short = this.shortage(w.need);
      const fits = !short.slot && !short.memory && !short.cores;
      const takesReserved = reserved.slot || (reserved.memory && w.need.memoryMiB > 0) || (reserved.cores && w.need.cores > 0);
      if (fits && !takesReserved) {
        this.waiters.splice(i, 1);
        this.used.slots++;
        this.used.memoryMiB += w.need.memoryMiB;
        this.used.cores += w.need.cores;
        // Everyone older still waiting was passed over by this run.
        for (let j = 0; j < i; j++) this.waiters[j]!.passedBy++;
        w.grant();
        continue;
      }
      if (!fits && w.passedBy >= this.passLimit) {
        reserved.slot ||= short.slot;
        reserved.memory ||= short.memory;
        reserved.cores ||= short.cores;
      }
      i++;
    }
  }
}
