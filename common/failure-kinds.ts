// What happened to a run, and why the orchestrator said something, as data: tagged unions
// the scheduler, the broker and the worker produce and only orchestrator/reporters/ turns
// into words (reporters/failure-text.ts). Like cargo-nextest's TestEventKind and
// CancelReason: a report can tell a global timeout from a crash, an --until-fail stop from
// a Ctrl-C, without matching English text. Everything here survives structured clone and
// JSON (the JSON report carries these objects, with a `message` added).

/** How the script's own failure ended it: the worker classifies what the script threw. */
export type ScriptFailureKind =
  /** A machine command did not do what was asked (`succeed` failed, `fail` succeeded). */
  | "command-failed"
  /** A machine did not boot (QEMU exited, no backdoor shell in time). */
  | "boot-failed"
  /** A machine went away under a running command (QEMU exited, the guest rebooted). */
  | "machine-died"
  /** The test file could not be loaded in the worker that ran it. */
  | "load-error"
  /** Anything else the script threw: an assertion, a wait that timed out, a bug. */
  | "assertion";

/** One cause of a failed attempt. */
export type FailureCause =
  | { kind: ScriptFailureKind; machine?: string }
  /** The test's globalTimeout ran out (the clock pauses while halted). */
  | { kind: "global-timeout"; seconds: number }
  /** Ctrl-C or SIGTERM stopped it. */
  | { kind: "interrupted"; signal?: string }
  /** Watch mode stopped it to run it again: `by` is what changed (a file, a key). */
  | { kind: "superseded"; by: string }
  /** Its worker thread died (an exit, an out-of-memory abort). */
  | { kind: "worker-crashed"; message: string }
  /** It did not stop within --abort-grace of being asked, so its worker was killed. */
  | { kind: "worker-killed"; graceMs: number }
  /** The task returned without the run's `done` message. */
  | { kind: "no-result" }
  /** It never started: it can never fit the host's budget, or qemu is not ready. */
  | { kind: "not-admitted"; over?: BudgetOverrun; qemuUnavailable?: string }
  /** Its processes outlived it and were killed. */
  | { kind: "leftovers"; machines: string[] }
  /** Queue mode: every host that took it died holding it (BullMQ's stalled-job limit). */
  | { kind: "hosts-lost"; hosts: string[] };

export type FailureKind = FailureCause["kind"];

/** A demand that can never fit the budget (ResourceBudget.overrun): only memory is a hard limit. */
export interface BudgetOverrun {
  memoryMiB?: { need: number; budget: number };
}

/**
 * A failed attempt: its first cause decides `kind`; `also` holds the causes after it (a
 * timeout whose worker was then killed, leftover processes). `scriptSaw` is the script's
 * own error message when the orchestrator ended it and the script then saw something else.
 */
export type Failure = FailureCause & { also?: FailureCause[]; scriptSaw?: string };

/** Causes the orchestrator (not the script) made: they are the attempt's `reason` in reports. */
export function isOrchestratorCause(c: FailureCause): boolean {
  return !SCRIPT_KINDS.has(c.kind);
}

const SCRIPT_KINDS: ReadonlySet<FailureKind> = new Set<ScriptFailureKind>(["command-failed", "boot-failed", "machine-died", "load-error", "assertion"]);

/** Why a running test is asked to stop (the task port's `abort`). */
export type AbortCause = Extract<FailureCause, { kind: "global-timeout" | "interrupted" | "superseded" }>;

/** Why a whole run of the suite is stopped from outside (Ctrl-C, or watch mode rerunning it). */
export type StopCause = Extract<AbortCause, { kind: "interrupted" | "superseded" }>;

/** Why the suite started no more runs. */
export type StopReason =
  | { kind: "until-fail"; run: string; flaky: boolean }
  | { kind: "max-fail"; limit: number; run: string; flaky: boolean }
  | { kind: "interrupted"; signal?: string }
  | { kind: "superseded"; by: string }
  /** Queue mode: runs were left and no host was alive for `waitedMs` (`hosts`: those that died holding runs). */
  | { kind: "hosts-gone"; hosts: string[]; waitedMs: number };

/** Why a failing test was not held at a breakpoint. */
export type HaltRefusal =
  | { kind: "max-frozen"; limit: number }
  | { kind: "console-failed"; message: string }
  /** The run was already being stopped (timeout, Ctrl-C). */
  | { kind: "stopping"; cause: AbortCause }
  | { kind: "no-broker" }
  /** It was released (or stopped) before it halted: the worker does not wait for an answer. */
  | { kind: "released"; by: string };

/** What the orchestrator tells the person running it, besides test events. */
export type Notice =
  | { kind: "stopped"; stop: StopReason }
  /** A signal arrived: `again` is the second, which kills the running tests. */
  | { kind: "signal"; signal: string; again: boolean }
  /** Only halted tests are left: the run waits for their release. */
  | { kind: "holding-breakpoints"; count: number }
  | { kind: "swept-state-dirs"; dirs: string[] }
  | { kind: "pool-error"; message: string }
  /** The scheduler's run source threw (queue mode: the queue); no more runs are taken from it. */
  | { kind: "run-source-failed"; message: string }
  | { kind: "late-error"; run: string; errorKind: string; message: string }
  | { kind: "no-control-socket"; message: string }
  | { kind: "no-tests"; reason: string; passWithNoTests: boolean }
  | { kind: "qemu-unavailable"; message: string }
  /** A test needs more vCPUs than the whole budget (--cores × --cpu-overcommit): its runs start
   *  only when no other qemu run holds anything, and none starts beside them. */
  | { kind: "runs-alone"; test: string; vcpus: number; budget: { vcpus: number; cores: number; cpuOvercommit: number } }
  /** Run logs could not be written from `file` on (a full disk): they are truncated. */
  | { kind: "run-log-truncated"; error: string; file: string }
  /** A line from another part of haltpoint that speaks for itself: test selection
   *  (--shard, --rerun-failed), qemu preparation (image, accelerator), the sandbox. */
  /** A teardown step of the orchestrator's failed (what is left is named); nothing else is affected. */
  | { kind: "teardown-failed"; what: string; message: string }
  | { kind: "info"; source: "selection" | "qemu" | "sandbox" | "queue"; text: string };
