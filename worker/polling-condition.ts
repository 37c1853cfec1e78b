import { AsyncLocalStorage } from "node:async_hooks";
import { DEFAULT_WAIT_SECONDS, pollUntil } from "../vm/poll.ts";

// NixOS's `polling_condition`: a check that must keep holding while a part of the test
// runs. It is evaluated around every machine command (at most once per `secondsInterval`),
// and the first time it is false the command fails with the condition's description.

export interface PollingConditionOptions {
  /** Check at most this often, in seconds. Default 2 (as NixOS). */
  secondsInterval?: number;
  /** Seconds one check may take before it counts as failed. Default 900. */
  timeout?: number;
}

export type ConditionFn = () => boolean | void | Promise<boolean | void>;

export class PollingConditionError extends Error {
  override name = "PollingConditionError";
}

export class PollingCondition {
  private lastChecked = -Infinity;
  private inFlight: Promise<boolean> | undefined;
  private lastError = "";
  active = true;

  constructor(
    readonly description: string,
    private readonly fn: ConditionFn,
    private readonly conditions: PollingConditions,
    readonly secondsInterval: number,
    private readonly timeoutSeconds: number,
  ) {}

  /** Run the condition now (or join a check already running); true when it holds. */
  check(force = false): Promise<boolean> {
    if (this.inFlight) return this.inFlight;
    if (!force && performance.now() - this.lastChecked < this.secondsInterval * 1000) return Promise.resolve(true);
    this.inFlight = this.conditions.runUnchecked(async () => {
      let timer: NodeJS.Timeout | undefined;
      try {
        const r = await Promise.race([
          Promise.resolve().then(this.fn),
          new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the check took over ${this.timeoutSeconds} s`)), this.timeoutSeconds * 1000))),
        ]);
        // As NixOS: returning nothing counts as holding; a throw counts as false.
        this.lastError = "";
        return r === undefined || r === true || (r as unknown) === null ? true : Boolean(r);
      } catch (e) {
        this.lastError = (e as Error)?.message ?? String(e);
        return false;
      } finally {
        clearTimeout(timer);
        this.lastChecked = performance.now();
        this.inFlight = undefined;
      }
    });
    return this.inFlight;
  }

  /** Throws PollingConditionError when the condition is (due and) false. */
  async maybeFail(): Promise<void> {
    if (!(await this.check())) {
      throw new PollingConditionError(`polling condition failed: ${this.description}${this.lastError ? ` (${this.lastError.split("\n")[0]})` : ""}`);
    }
  }

  /** Wait until the condition holds (NixOS `condition.wait()`), checking once a second. */
  async wait(opts: { timeout?: number } = {}): Promise<void> {
    await pollUntil(`polling condition '${this.description}' to hold`, opts.timeout ?? DEFAULT_WAIT_SECONDS, async () =>
      (await this.check(true)) ? { done: true, value: undefined } : { done: false, last: this.lastError },
    );
  }

  /** The condition is no longer checked. */
  stop(): void {
    this.active = false;
    this.conditions.remove(this);
  }

  /** Run `body` with the condition active, then stop it (NixOS's `with condition:`). */
  async during<T>(body: () => Promise<T> | T): Promise<T> {
    try {
      return await body();
    } finally {
      this.stop();
    }
  }
}

/** The active conditions of one test run. */
export class PollingConditions {
  private readonly active = new Set<PollingCondition>();
  /** Set while a condition's own function runs: its machine commands do not check again. */
  private readonly checking = new AsyncLocalStorage<true>();

  add(description: string, fn: ConditionFn, opts: PollingConditionOptions = {}): PollingCondition {
    if (typeof description !== "string" || !description.trim()) throw new TypeError("pollingCondition(): the first argument is its description (a non-empty string)");
    if (typeof fn !== "function") throw new TypeError(`pollingCondition('${description}'): the second argument must be a function`);
    const interval = opts.secondsInterval ?? 2;
    const timeout = opts.timeout ?? DEFAULT_WAIT_SECONDS;
    if (!(typeof interval === "number" && interval >= 0)) throw new TypeError(`pollingCondition('${description}'): secondsInterval must be a number of seconds (0 or more)`);
    if (!(typeof timeout === "number" && timeout > 0)) throw new TypeError(`pollingCondition('${description}'): timeout must be a positive number of seconds`);
    const c = new PollingCondition(description, fn, this, interval, timeout);
    this.active.add(c);
    return c;
  }

  remove(c: PollingCondition): void {
    this.active.delete(c);
  }

  runUnchecked<T>(fn: () => Promise<T>): Promise<T> {
    return this.checking.run(true, fn);
  }

  /** Called around every machine command: fails if an active, due condition is false. */
  async checkAll(): Promise<void> {
    if (this.checking.getStore() || this.active.size === 0) return;
    for (const c of [...this.active]) await c.maybeFail();
  }
}
