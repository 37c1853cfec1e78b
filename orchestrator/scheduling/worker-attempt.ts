import { MessageChannel, type MessagePort } from "node:worker_threads";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { CollectTask, RunTask, TaskControl, WorkerEvent } from "../../common/events.ts";
import type { AbortCause, Notice } from "../../common/failure-kinds.ts";
import type { QemuRuntime } from "../../vm/qemu/qemu-runtime.ts";
import type { PlannedRun } from "../selection/plan.ts";
import type { RunAttempt } from "../results.ts";
import type { ReporterSet } from "../report-events.ts";
import type { ProcessLedger } from "./process-ledger.ts";
import { recycledWorker } from "./pool.ts";
import { attemptFrom, type AttemptFacts } from "./attempt-result.ts";
import { RunClock } from "./run-clock.ts";
import { RunBreakpoints, type HaltBroker } from "./broker-adapter.ts";

/** The worker pool as the scheduler uses it (piscina; a fake in test/unit/scheduler.test.ts). */
export interface TaskPool {
  run(task: RunTask | CollectTask, options?: { transferList?: MessagePort[]; signal?: AbortSignal }): Promise<unknown>;
}

/** The process ledger as the scheduler uses it (process-ledger.ts). */
export type RunLedger = Pick<ProcessLedger, "add" | "remove" | "killRun">;

/** What an attempt in a worker needs: the pool, where its events go, and the run's settings. */
export interface WorkerAttemptOptions {
  pool: TaskPool;
  reporters: ReporterSet;
  ledger: RunLedger;
  /** Root of the per-run state directories (short: UNIX socket paths live there). */
  stateRoot: string;
  defaultBackend: string;
  /** How long a run asked to stop (timeout, Ctrl-C) may take before its worker is killed. */
  abortGraceMs: number;
  /** Holds halted tests (--debug-hook); without it no test halts. */
  broker?: HaltBroker;
  /** Halt every failing test (--debug-hook); tests may also ask with enableDebugHook. */
  debugHook: boolean;
  /** SSH backdoor sockets for every run (--ssh-backdoor / --no-ssh-backdoor); undefined: per test. */
  sshBackdoor?: boolean;
  /** A connection to a frozen machine's SSH socket thaws it (--ssh-thaws). */
  sshThaws?: boolean;
  /** --keep-machine-state: where kept machine state lives (per test, per machine). */
  keepStateRoot?: string;
  /** --save-breakpoints: halted tests are saved as bundles here and released. */
  saveBreakpoints?: string;
  /** --sign-key: the private key bundles are signed with (else the user's own; hooks/bundles/bundle-signature.ts). */
  signKey?: string;
  /** How long to wait for a run's `done` after its task returned (default 5 s; tests shorten it). */
  doneWaitMs?: number;
}

/** What an attempt asks of the scheduler around it. */
export interface AttemptScheduler {
  /** Guest image + accelerator for qemu machines, once prepared. */
  qemu(): QemuRuntime | undefined;
  /** The suite is stopping: a run halted now is released at once, a recycled worker's run is not tried again. */
  stopping(): boolean;
  /** The attempt halted on its failure: final (never retried), so --until-fail may stop admission now. */
  failedAtBreakpoint(run: PlannedRun): void;
  /** Whether the run's worker makes the machines of its next run while it runs (RunTask.ahead). */
  ahead(run: PlannedRun): RunTask["ahead"];
}

/** A run in flight: what the scheduler needs to stop it. */
export interface ActiveRun {
  run: PlannedRun;
  port: MessagePort;
  kill: AbortController;
  /** Why the orchestrator asked it to stop, once it did. */
  cause?: AbortCause;
  killTimer?: NodeJS.Timeout;
  /** Its breakpoints: whether it is halted now, and whether it halted on its failure. */
  breakpoints: RunBreakpoints;
}

/** How long to wait for a run's final `done` message after its task returned. */
const DONE_MESSAGE_WAIT_MS = 5000;

/**
 * One attempt of a run in a worker thread: its task and MessagePort, its clock (global
 * timeout, SLOW), its breakpoints, and afterwards its leftovers; whatever happens becomes
 * one RunAttempt (attempt-result.ts). The runs in flight are `active`, for the scheduler
 * to stop.
 */
export class WorkerAttempts {
  readonly active = new Set<ActiveRun>();
  private seq = 0;

  constructor(
    private readonly o: WorkerAttemptOptions,
    private readonly scheduler: AttemptScheduler,
  ) {}

  /** Ask a run to stop for `cause` and tear down; its worker is killed after --abort-grace. */
  abort(a: ActiveRun, cause: AbortCause): void {
    if (a.cause) return;
    a.cause = cause;
    a.port.postMessage({ t: "abort", cause } satisfies TaskControl);
    a.killTimer = setTimeout(() => a.kill.abort(), this.o.abortGraceMs);
  }

  /** One attempt of a run, in a worker. `halted`: it stopped at a breakpoint (not retried). */
  async run(run: PlannedRun, attemptNo: number, logDir: string, freeSlot: () => void, slot: number): Promise<{ attempt: RunAttempt; halted: boolean }> {
    const { reporters, ledger } = this.o;
    const stateDir = join(this.o.stateRoot, String(++this.seq));
    const { port1, port2 } = new MessageChannel();
    const a = { run, port: port1, kill: new AbortController() } as ActiveRun;
    const startedAt = Date.now();
    const t0 = performance.now();
    const clock = new RunClock({
      timeoutMs: run.test.globalTimeout * 1000,
      onTimeout: () => this.abort(a, { kind: "global-timeout", seconds: run.test.globalTimeout }),
      slowMs: run.test.slowTimeout !== undefined ? run.test.slowTimeout * 1000 : undefined,
      onSlow: (elapsedMs) => reporters.emit({ kind: "slow", run, attempt: attemptNo, elapsedMs, slowTimeoutMs: run.test.slowTimeout! * 1000 }),
      isHalted: () => a.breakpoints.heldId !== undefined,
    });
    a.breakpoints = new RunBreakpoints({
      run,
      port: port1,
      clock,
      broker: this.o.broker,
      cause: () => a.cause,
      stopping: () => this.scheduler.stopping(),
      onHeld: (kind) => {
        // A halted failure is final (never retried): --until-fail stops admission now,
        // not when someone releases the breakpoint.
        if (kind === "failure") this.scheduler.failedAtBreakpoint(run);
        freeSlot();
      },
    });
    this.active.add(a);

    let done: Extract<WorkerEvent, { t: "done" }> | undefined;
    let onDone: () => void = () => {};
    const doneSeen = new Promise<void>((r) => (onDone = r));
    let workerStarted = false;
    port1.on("message", (e: WorkerEvent) => {
      if (e.t === "process") {
        if (e.alive) ledger.add(run.key, e.pid, e.machine);
        else ledger.remove(run.key, e.pid);
      } else if (e.t === "start") {
        workerStarted = true;
        clock.start();
      } else if (e.t === "halt") a.breakpoints.onHalt(e);
      else if (e.t === "resumed") a.breakpoints.onResumed(e);
      else if (e.t === "bundle" && e.reqId !== undefined) this.o.broker?.bundleSaved?.(e);
      else if (e.t === "done") {
        done = e;
        onDone();
      }
      reporters.emit({ kind: "worker-event", run, event: e });
    });
    const ahead = this.scheduler.ahead(run);
    const task: RunTask = {
      kind: "run",
      file: run.test.file,
      runIndex: run.index,
      attempt: attemptNo,
      defaultBackend: this.o.defaultBackend,
      logDir,
      stateDir,
      debugHook: this.o.debugHook,
      sshBackdoor: this.o.sshBackdoor,
      sshThaws: this.o.sshThaws,
      keepStateRoot: this.o.keepStateRoot,
      saveBreakpoints: this.o.saveBreakpoints,
      ...(this.o.signKey ? { signKey: this.o.signKey } : {}),
      runKey: run.key,
      qemu: this.scheduler.qemu(),
      ...(ahead ? { ahead } : {}),
      port: port2,
    };
    let crash: AttemptFacts["crash"];
    let recycledBeforeStart = false;
    try {
      await this.o.pool.run(task, { transferList: [port2], signal: a.kill.signal });
      await Promise.race([doneSeen, new Promise((r) => setTimeout(r, this.o.doneWaitMs ?? DONE_MESSAGE_WAIT_MS).unref())]);
    } catch (e) {
      // A worker recycling itself after a late error (worker/late-errors.ts) may just have been
      // handed this run: the run never started, so it is not failed but run again.
      recycledBeforeStart = !workerStarted && !a.kill.signal.aborted && recycledWorker(e);
      crash = a.kill.signal.aborted ? { kind: "worker-killed", graceMs: this.o.abortGraceMs } : { kind: "worker-crashed", message: (e as Error).message };
    } finally {
      clock.stop();
      clearTimeout(a.killTimer);
      this.active.delete(a);
      port1.close();
      await a.breakpoints.finish(crash);
    }
    if (recycledBeforeStart && !this.scheduler.stopping()) {
      await removeStateDir(stateDir, (n) => reporters.notice(n));
      return this.run(run, attemptNo, logDir, freeSlot, slot);
    }
    const leftovers = ledger.killRun(run.key);
    // The worker removes its state directory; after a crash it is ours to remove.
    if (crash || !done) await removeStateDir(stateDir, (n) => reporters.notice(n));
    const attempt = attemptFrom({
      attempt: attemptNo,
      startedAt,
      elapsedMs: performance.now() - t0,
      logDir,
      slot,
      done,
      abort: a.cause,
      crash,
      leftovers,
      halts: a.breakpoints.halts,
    });
    return { attempt, halted: a.breakpoints.everHalted };
  }
}

/** A crashed run's state directory (sockets, sandboxes): nothing in it is worth a failure, but one that stays is a notice. */
async function removeStateDir(dir: string, notice: (n: Notice) => void): Promise<void> {
  await rm(dir, { recursive: true, force: true }).catch((e: Error) => notice({ kind: "teardown-failed", what: `removing the state directory ${dir}`, message: e.message }));
}
