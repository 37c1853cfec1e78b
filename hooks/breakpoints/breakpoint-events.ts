import type { BreakpointInfo } from "../control/control-protocol.ts";
import type { HaltRefusal } from "../../common/failure-kinds.ts";

/** What the broker needs of a run: the orchestrator hands it its own planned runs. */
export interface BrokerRun {
  key: string;
  index: number;
  test: { name: string };
}

/**
 * What the breakpoint broker tells whoever reports (the terminal prints them in `!!!`
 * lines): part of the orchestrator's report event stream (orchestrator/report-events.ts).
 */
export type BreakpointEvent<Run extends BrokerRun = BrokerRun> =
  /** A test halted at a breakpoint and can be attached to. */
  | { kind: "breakpoint"; run: Run; info: BreakpointInfo }
  /** A halting test was not held (--max-frozen reached, its console could not listen). */
  | { kind: "breakpoint-refused"; run: Run; refusal: HaltRefusal }
  /** A held test left its breakpoint; `by` says who released it. */
  | { kind: "breakpoint-end"; run: Run; info: BreakpointInfo; by: string }
  /** Someone who may not use the console tried to (another uid, a wrong token). */
  | { kind: "console-refused"; run: Run; message: string };
