import { setMaxListeners } from "node:events";
import { join } from "node:path";
import PQueue from "p-queue";
import { collectTests } from "./collect-tests.ts";
import { runDirName } from "../../common/run-dir-names.ts";
import type { LoadError, PlannedRun, PlannedTest } from "../selection/plan.ts";
import { failsSuite, resultFromAttempts, type RunAttempt, type RunResult } from "../results.ts";
import { demandOf, type ResourceBudget } from "./resource-budget.ts";
import type { QemuRuntime } from "../../vm/qemu/qemu-runtime.ts";
import type { FailureCause, StopCause, StopReason } from "../../common/failure-kinds.ts";
import { WorkerAttempts, type WorkerAttemptOptions } from "./worker-attempt.ts";

export interface SchedulerOptions extends WorkerAttemptOptions {
  jobs: number;
  logDir: string;
  /** Stop admitting runs at the first failure (--until-fail). */
  untilFail: boolean;
  /** Stop admitting runs after this many failed runs (--max-fail; --until-fail is 1). */
  maxFail?: number;
  /** Memory and cores that qemu machines may take at once (--memory, --cores). */
  budget: ResourceBudget;
  /** Retries of a failed run for every test (--retries); else each test's own `retries`. */
  retries?: number;
  /** A flaky run counts as a failure, for --until-fail too (--flaky-fails). */
  flakyFails?: boolean;
}

/**
 * Admission and dispatch: p-queue decides when a run may start (--jobs), piscina runs it
 * in a worker thread. The scheduler turns whatever happens (a result, a crash, a timeout)
 * into exactly one RunResult per started run, and formats nothing. Each attempt in a
 * worker (its task, clock, breakpoints, leftovers) is worker-attempt.ts's.
 */
export class Scheduler {
  private readonly queue: PQueue;
  /** The attempts in worker threads, and the runs in flight. */
  private readonly attempts: WorkerAttempts;
  private stopping = false;
  private admitting = true;
  private stoppedWork = false;
  /** runAll() has begun: before that (collecting, preparing qemu) an interrupt stops the whole run. */
  private runsBegun = false;
  /** Guest image + accelerator for qemu machines, once prepared. */
  qemu: QemuRuntime | undefined;
  /** Machines taken ahead (take-ahead.ts): which runs, and the channel their processes are posted on. */
  takeAhead: { channel: string; wanted(run: PlannedRun): boolean } | undefined;
  /** Why qemu tests cannot run (image build or accel probe failed): the error's message. */
  qemuUnavailable: string | undefined;
  /** Why admission stopped (--until-fail, --max-fail, Ctrl-C), once it did: the reports say it. */
  stopReason: StopReason | undefined;
  /** Which --jobs slots are taken: a run's slot index is its lane in the HTML timeline. */
  private readonly slotsTaken: boolean[] = [];
  /** Runs that failed (counted once each, for --max-fail). */
  private readonly failedRuns = new Set<string>();

  /** Runs handed to admission at once: those running plus as many waiting (see admit). */
  private readonly window: number;
  /** Tests already told they run alone (one notice per test, not per run). */
  private readonly toldAlone = new Set<string>();
  /** Aborted when admission stops: runs waiting for the budget leave its line. */
  private readonly stopAdmitting = new AbortController();

  constructor(private readonly o: SchedulerOptions) {
    // The budget holds --jobs (a run slot each) as well as memory and vCPUs; the queue lets
    // it see up to --jobs runs waiting besides those running, so that a small run behind a
    // big waiting one can start in its place (backfilling, resource-budget.ts).
    this.window = 2 * o.jobs;
    // Every run waiting for the budget listens to it (up to --jobs of them).
    setMaxListeners(0, this.stopAdmitting.signal);
    this.queue = new PQueue({ concurrency: this.window });
    this.attempts = new WorkerAttempts(o, {
      qemu: () => this.qemu,
      stopping: () => this.stopping,
      failedAtBreakpoint: (run) => this.stopOnFailure(run),
      ahead: (run) => (this.takeAhead?.wanted(run) && !this.stopping && this.admitting ? { channel: this.takeAhead.channel } : undefined),
    });
  }

  /** Load every file in a worker and learn what it declares. */
  collect(files: string[]): Promise<{ tests: PlannedTest[]; loadErrors: LoadError[] }> {
    return collectTests(this.o.pool, files, this.o.defaultBackend, this.o.jobs);
  }

  /**
   * Run the planned runs; resolves with the results of the runs that started. Runs are
   * pulled from `runs` as slots free rather than queued up front, so an endless source
   * (--stress-duration) works, and a run never waits in the queue past its source's end.
   */
  async runAll(runs: Iterable<PlannedRun> | AsyncIterable<PlannedRun>): Promise<RunResult[]> {
    this.runsBegun = true;
    const results: RunResult[] = [];
    const outstanding = new Set<Promise<void>>();
    // An async source (queue mode: the next run comes from another machine) is asked for
    // one run at a time, when a slot is free; it ends the run by ending itself.
    const source: Iterator<PlannedRun> | AsyncIterator<PlannedRun> = Symbol.asyncIterator in runs ? runs[Symbol.asyncIterator]() : runs[Symbol.iterator]();
    let exhausted = false;
    let pulling: Promise<void> | undefined;
    const take = (next: IteratorResult<PlannedRun>): void => {
      if (next.done) exhausted = true;
      // Not awaited one by one: a cleared queue (--until-fail, Ctrl-C) never settles them.
      else void this.queue.add(() => this.admit(next.value, results, outstanding));
    };
    const feed = (): void => {
      // Pull a run only while a run slot is free: it then starts at once, or waits for room
      // and lets later runs pass it; pulled while every slot is busy it would only wait, and
      // might start after its source's end (--stress-duration). (admit takes a slot before
      // its first await, so the count is current in this loop.)
      while (!exhausted && !pulling && this.admitting && this.queue.size + this.queue.pending < this.window && this.o.budget.inUse.slots < this.o.budget.limits.jobs) {
        const next = source.next();
        if (!(next instanceof Promise)) take(next);
        else
          pulling = next.then(
            (n) => {
              pulling = undefined;
              take(n);
              feed();
            },
            (e: unknown) => {
              pulling = undefined;
              exhausted = true;
              this.o.reporters.notice({ kind: "run-source-failed", message: describeThrownMessage(e) });
            },
          );
      }
    };
    // p-queue emits "next" each time a task ends (a run ended or halted): a slot is free.
    this.queue.on("next", feed);
    try {
      feed();
      while (this.queue.size || this.queue.pending || pulling) {
        if (this.queue.size || this.queue.pending) await this.queue.onIdle();
        else await pulling;
      }
    } finally {
      this.queue.off("next", feed);
    }
    if (outstanding.size && this.o.broker?.count) {
      this.o.reporters.notice({ kind: "holding-breakpoints", count: this.o.broker.count });
    }
    while (outstanding.size) await Promise.all(outstanding);
    return results;
  }

  /** One queue task: wait for the budget, start the run, hold the task until it ends or halts. */
  private async admit(run: PlannedRun, results: RunResult[], outstanding: Set<Promise<void>>): Promise<void> {
    if (!this.admitting) return;
    const need = demandOf(run.test);
    const usesQemu = run.test.nodes.some((n) => n.backend === "qemu");
    const over = this.o.budget.overrun(need);
    const refusal: FailureCause | undefined = over
      ? { kind: "not-admitted", over }
      : usesQemu && this.qemuUnavailable !== undefined
        ? { kind: "not-admitted", qemuUnavailable: this.qemuUnavailable }
        : undefined;
    if (refusal) return void results.push(this.refuse(run, refusal, this.firstFreeLane()));
    if (this.o.budget.runsAlone(need) && !this.toldAlone.has(run.test.name)) {
      this.toldAlone.add(run.test.name);
      const { cores, cpuOvercommit } = this.o.budget.limits;
      this.o.reporters.notice({ kind: "runs-alone", test: run.test.name, vcpus: need.cores, budget: { vcpus: this.o.budget.vcpus, cores, cpuOvercommit } });
    }
    // The budget's run slots are --jobs: at most that many runs start, the rest wait here.
    const lease = await this.o.budget.acquire(need, this.stopAdmitting.signal);
    if (!lease) return;
    if (!this.admitting) return lease.release();
    // A run's slot index is its lane in the HTML timeline: the first one free.
    const slot = this.firstFreeLane();
    this.slotsTaken[slot] = true;
    // A halted test gives its run slot back (its machines keep their memory and vCPUs):
    // the queue task ends when the run ends or halts, whichever comes first; the run itself
    // is awaited in runAll.
    let halted!: () => void;
    const haltedOrEnded = new Promise<void>((r) => (halted = r));
    let slotFreed = false;
    const freeSlot = (): void => {
      if (slotFreed) return;
      slotFreed = true;
      this.slotsTaken[slot] = false;
      lease.releaseSlot();
      halted();
    };
    const p = this.runOne(run, freeSlot, slot)
      .then((r) => void results.push(r))
      .finally(() => {
        freeSlot();
        lease.release();
        outstanding.delete(p);
      });
    outstanding.add(p);
    await Promise.race([p, haltedOrEnded]);
  }

  private firstFreeLane(): number {
    const slot = this.slotsTaken.indexOf(false);
    return slot < 0 ? this.slotsTaken.length : slot;
  }

  /** Was work other than halted tests stopped by an interrupt (Ctrl-C)? */
  get interruptedWork(): boolean {
    return this.stoppedWork;
  }

  /** Start no further run; running ones go on to their end (--until-fail). */
  stopAdmission(): void {
    this.admitting = false;
    this.stopAdmitting.abort();
    this.queue.clear();
  }

  /** Ctrl-C: admit nothing more, ask every running test to stop and tear down. */
  interrupt(signal?: string): void {
    this.stop(signal ? { kind: "interrupted", signal } : { kind: "interrupted" });
  }

  /**
   * Stop this run of the suite for `cause`: admit nothing more, release every held
   * breakpoint, ask every running test to stop and tear down (its result carries the cause).
   * Ctrl-C is one cause; watch mode rerunning the suite after a change is another.
   */
  stop(cause: StopCause): void {
    if (this.stopping) return;
    this.stopping = true;
    this.stopReason ??= cause;
    // Ctrl-C once only halted tests remain just releases them: that is not lost work. Nor
    // is a released failure still tearing down: its outcome is decided, let it finish.
    this.stoppedWork = !this.runsBegun || this.queue.size > 0 || [...this.attempts.active].some((a) => a.breakpoints.heldId === undefined && !a.breakpoints.failedAtBreakpoint);
    this.stopAdmission();
    for (const a of this.attempts.active) {
      if (a.breakpoints.heldId !== undefined) a.breakpoints.release(cause);
      else if (!a.breakpoints.failedAtBreakpoint) this.attempts.abort(a, cause);
    }
  }

  /** Kill every running worker now (a second Ctrl-C). */
  killNow(): void {
    for (const a of this.attempts.active) {
      a.cause ??= { kind: "interrupted" };
      a.kill.abort();
    }
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  /** A run that cannot start: reported as failed at once, without a worker. */
  private refuse(run: PlannedRun, failure: FailureCause, slot: number): RunResult {
    const logDir = join(this.o.logDir, runDirName(run));
    this.o.reporters.emit({ kind: "run-start", run, logDir });
    const result = resultFromAttempts(run, [{ attempt: 1, outcome: "failed", failure, startedAt: Date.now(), durationMs: 0, logDir, slot }]);
    this.o.reporters.emit({ kind: "run-end", result });
    this.stopOnFailure(run);
    return result;
  }

  /** --max-fail N / --until-fail: the Nth failed run stops admission (at the failure, even if it then halts). */
  private stopOnFailure(run: PlannedRun, flaky = false): void {
    this.failedRuns.add(run.key);
    const limit = this.o.maxFail ?? (this.o.untilFail ? 1 : undefined);
    if (limit === undefined || !this.admitting || this.failedRuns.size < limit) return;
    this.stopAdmission();
    const stop: StopReason = this.o.maxFail !== undefined ? { kind: "max-fail", limit: this.o.maxFail, run: run.key, flaky } : { kind: "until-fail", run: run.key, flaky };
    this.stopReason ??= stop;
    this.o.reporters.notice({ kind: "stopped", stop });
  }

  /**
   * One run: its first attempt, then retries while it fails (--retries / `retries:`),
   * unless it halted at a breakpoint or the suite is stopping. One RunResult, whatever happens.
   */
  private async runOne(run: PlannedRun, freeSlot: () => void, slot: number): Promise<RunResult> {
    const { reporters } = this.o;
    const base = join(this.o.logDir, runDirName(run));
    const attemptDir = (n: number): string => (n === 1 ? base : join(base, `try${n}`));
    const maxAttempts = 1 + (this.o.retries ?? run.test.retries ?? 0);
    reporters.emit({ kind: "run-start", run, logDir: base });
    const attempts: RunAttempt[] = [];
    for (let n = 1; ; n++) {
      const { attempt, halted } = await this.attempts.run(run, n, attemptDir(n), freeSlot, slot);
      attempts.push(attempt);
      if (attempt.outcome === "passed" || halted || this.stopping || n >= maxAttempts) break;
      reporters.emit({ kind: "retry", run, failed: attempt, next: n + 1, logDir: attemptDir(n + 1) });
    }
    const result = resultFromAttempts(run, attempts);
    reporters.emit({ kind: "run-end", result });
    if (failsSuite(result, this.o.flakyFails ?? false)) this.stopOnFailure(run, result.outcome === "flaky");
    return result;
  }
}

function describeThrownMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
