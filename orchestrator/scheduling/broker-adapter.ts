import type { MessagePort } from "node:worker_threads";
import type { TaskControl, WorkerEvent } from "../../common/events.ts";
import type { BreakpointInfo } from "../../hooks/control/control-protocol.ts";
import type { AbortCause, FailureCause } from "../../common/failure-kinds.ts";
import type { PlannedRun } from "../selection/plan.ts";
import type { HaltSpan } from "../results.ts";
import type { RunClock } from "./run-clock.ts";
import { causeText } from "../reporters/failure-text.ts";

type HaltEvent = Extract<WorkerEvent, { t: "halt" }>;

/** What the scheduler needs of the breakpoint broker (hooks/breakpoints/breakpoint-broker.ts). */
export interface HaltBroker {
  readonly count: number;
  register(run: PlannedRun, e: HaltEvent, taskPort: MessagePort): Promise<BreakpointInfo | undefined>;
  release(id: string, by: string): boolean;
  ended(id: string, by: string): Promise<void>;
  /** The worker's answer to a `haltpoint save` (optional: a broker without saves ignores it). */
  bundleSaved?(e: Extract<WorkerEvent, { t: "bundle" }>): void;
}

export interface RunBreakpointsOptions {
  run: PlannedRun;
  port: MessagePort;
  clock: RunClock;
  broker?: HaltBroker;
  /** Why the orchestrator is stopping this run, if it is (a halt is then refused). */
  cause(): AbortCause | undefined;
  /** The suite is stopping: a breakpoint that is held now is released at once. */
  stopping(): boolean;
  /** The test is held: its --jobs slot is free. */
  onHeld(kind: "failure" | "breakpoint"): void;
}

/** The broker's words for who released a breakpoint: the broker takes them as text. */
export const releasedBy = (c: FailureCause): string => causeText(c);

/**
 * One attempt's side of the broker handshake: a `halt` from the worker is registered with
 * the broker (the clock paused meanwhile) or refused; `resumed` ends it; the halts are kept
 * as spans for the reports. The scheduler only forwards events and asks `heldId`.
 */
export class RunBreakpoints {
  readonly halts: HaltSpan[] = [];
  /** The breakpoint id while the run is halted. */
  heldId: string | undefined;
  /** It halted at least once (a halted attempt is not retried). */
  everHalted = false;
  /** It halted on a failure: its outcome is decided, and after release it only tears down. */
  failedAtBreakpoint = false;

  constructor(private readonly o: RunBreakpointsOptions) {}

  onHalt(e: HaltEvent): void {
    const { broker, port, clock } = this.o;
    const cause = this.o.cause();
    if (!broker || cause) {
      e.console.close();
      port.postMessage({ t: "halt-refused", refusal: cause ? { kind: "stopping", cause } : { kind: "no-broker" } } satisfies TaskControl);
      return;
    }
    clock.pause();
    void broker.register(this.o.run, e, port).then((info) => {
      if (!info) return clock.start();
      this.heldId = info.id;
      this.everHalted = true;
      this.halts.push({ id: info.id, kind: e.kind, startedAt: e.time, durationMs: -1 });
      if (e.kind === "failure") this.failedAtBreakpoint = true;
      this.o.onHeld(e.kind);
      if (this.o.stopping()) broker.release(info.id, releasedBy(this.o.cause() ?? { kind: "interrupted" }));
    });
  }

  onResumed(e: Extract<WorkerEvent, { t: "resumed" }>): void {
    const id = this.heldId;
    if (id === undefined) return;
    this.heldId = undefined;
    const by = "by" in e ? e.by : releasedBy(e.aborted);
    const h = this.halts.at(-1);
    if (h && h.durationMs < 0) Object.assign(h, { durationMs: Math.max(0, e.time - h.startedAt), by });
    void this.o.broker?.ended(id, by);
    if (!this.o.cause()) this.o.clock.start();
  }

  /** Ask the broker to release it (Ctrl-C while halted). */
  release(by: FailureCause): void {
    if (this.heldId !== undefined) this.o.broker?.release(this.heldId, releasedBy(by));
  }

  /** The attempt's task returned: a breakpoint still held ends with it, open spans close now. */
  async finish(crash: FailureCause | undefined): Promise<void> {
    const by = crash ? releasedBy(crash) : "the run ended";
    if (this.heldId !== undefined) await this.o.broker?.ended(this.heldId, by);
    for (const h of this.halts) if (h.durationMs < 0) Object.assign(h, { durationMs: Math.max(0, Date.now() - h.startedAt), by });
  }
}
