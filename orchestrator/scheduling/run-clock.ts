/** What a run's clock calls back. */
export interface RunClockOptions {
  /** The test's globalTimeout in ms: the time it may run, not counting halts. */
  timeoutMs: number;
  onTimeout(): void;
  /** --slow-timeout in ms: a SLOW event each time another one passes. */
  slowMs?: number;
  /** `elapsedMs` since the first start, never less than the thresholds crossed. */
  onSlow?(elapsedMs: number): void;
  /** While halted the slow events are not reported (the clock that counts them runs on). */
  isHalted(): boolean;
}

/**
 * A run's pausable clock. The global timeout counts only the time the test runs: it starts
 * when its worker picks the test up (not while it waits for a thread) and stops while the
 * test is halted at a breakpoint; resumed, the test gets the time it had left.
 */
export class RunClock {
  private timeoutTimer: NodeJS.Timeout | undefined;
  private slowTimer: NodeJS.Timeout | undefined;
  private leftMs: number;
  private startedAt = 0;
  private running = false;

  constructor(private readonly o: RunClockOptions) {
    this.leftMs = o.timeoutMs;
  }

  /** The test runs (its worker started it, or it left a breakpoint). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.startedAt = Date.now();
    this.timeoutTimer = setTimeout(() => this.o.onTimeout(), this.leftMs);
    if (this.o.slowMs !== undefined && this.o.onSlow && !this.slowTimer) this.startSlow(this.o.slowMs, this.o.onSlow);
  }

  /** The test halted: what is left of its time waits for it. */
  pause(): void {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.timeoutTimer);
    this.leftMs = Math.max(0, this.leftMs - (Date.now() - this.startedAt));
  }

  /** The attempt is over. */
  stop(): void {
    this.running = false;
    clearTimeout(this.timeoutTimer);
    clearInterval(this.slowTimer);
  }

  private startSlow(slowMs: number, onSlow: (elapsedMs: number) => void): void {
    const since = performance.now();
    let ticks = 0;
    this.slowTimer = setInterval(() => {
      // A timer may fire a fraction of a millisecond before the clock agrees that its
      // interval passed: never report less than the thresholds crossed.
      ticks++;
      if (!this.o.isHalted()) onSlow(Math.max(performance.now() - since, ticks * slowMs));
    }, slowMs).unref();
  }
}
