import type { DebianSpec } from "../vm/node-options.ts";
import { describeThrown, safeProperty } from "./describe-thrown.ts";
import type { MessagePort } from "node:worker_threads";
import type { QemuRuntime } from "../vm/qemu/qemu-runtime.ts";
import type { AbortCause, HaltRefusal, ScriptFailureKind } from "./failure-kinds.ts";

// The messages between a worker running a test and the main thread. Events flow one way,
// worker → main, on the task's MessagePort; main → worker messages are control requests
// only (abort, and the broker's answers about a breakpoint). Everything here must survive
// structured clone.

export type Outcome = "passed" | "failed";

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
}

export type WorkerEvent =
  | { t: "start"; time: number; threadId: number }
  | { t: "log"; time: number; machine?: string; msg: string; level?: "info" | "warn" | "error" }
  | { t: "console"; time: number; machine: string; line: string }
  | { t: "process"; machine: string; pid: number; alive: boolean }
  | { t: "subtest"; time: number; name: string; phase: "start" | "pass" | "fail"; durationMs?: number; error?: SerializedError }
  /** The test stopped at a breakpoint, its machines frozen; the broker should serve its
   *  console over `console` (a transferred port) and answer with `halted` or `halt-refused`. */
  | { t: "halt"; time: number; kind: "failure" | "breakpoint"; error?: SerializedError; machines: string[]; frozen: string[]; console: MessagePort; socketDir?: string; sockets?: BackdoorSocketInfo[] }
  /** A halted test was saved as a bundle (--save-breakpoints, or `haltpoint save` as `reqId`), or could not be (`error`). */
  | { t: "bundle"; time: number; reqId?: number; dir: string; bytes?: number; ms?: number; skipped?: string[]; revivable?: boolean; imageBytes?: number; localMachines?: string[]; error?: string }
  /** The breakpoint ended (released, `by` says by whom), or the orchestrator stopped the run
   *  (`aborted`: its cause, put into words on the main thread); the test goes on (breakpoint) or tears down (failure). */
  | { t: "resumed"; time: number; by: string }
  | { t: "resumed"; time: number; aborted: AbortCause }
  /** The last message of a run. The main thread waits for it before treating the run as finished.
   *  `aborted`: the script lost its race to the orchestrator's `abort` (it has no error of its own). */
  | { t: "done"; time: number; outcome: Outcome; error?: SerializedError; failureKind?: ScriptFailureKind; aborted?: AbortCause; durationMs: number };

/** A machine's SSH backdoor socket (a breakpoint's ssh lines name them). */
export interface BackdoorSocketInfo {
  machine: string;
  path: string;
}

/** What the main thread sends on a task's port: the control half of the task port
 *  (not the control socket of `haltpoint ls/attach/release`, hooks/control/control-protocol.ts). */
export type TaskControl =
  | { t: "abort"; cause: AbortCause }
  /** The broker registered the breakpoint: where its console and sockets are. */
  | { t: "halted"; id: string; host: string; port: number; socketDir: string }
  /** The broker will not hold this test (e.g. --max-frozen reached): tear down as usual. */
  | { t: "halt-refused"; refusal: HaltRefusal }
  /** `haltpoint release`, --freeze-ttl or the end of the run: leave the breakpoint. */
  | { t: "release"; by: string }
  /** `haltpoint save`: write the halted test to a bundle at `dir`; answered by a `bundle` event. */
  | { t: "save"; reqId: number; dir: string };

/** What the main thread sends to run one test. */
export interface RunTask {
  kind: "run";
  file: string;
  runIndex: number;
  /** 1 for the first execution of the run, 2… for its retries (--retries). */
  attempt?: number;
  /** Backend of nodes that name none. */
  defaultBackend: string;
  logDir: string;
  /** Directory for this run's machine state (sockets, sandboxes). */
  stateDir: string;
  /** Halt at a breakpoint when the test fails (--debug-hook or enableDebugHook). */
  debugHook: boolean;
  /** SSH backdoor sockets (--ssh-backdoor / --no-ssh-backdoor); undefined: the test's `sshBackdoor`, else on with the debug hook. */
  sshBackdoor?: boolean;
  /** A connection to a frozen machine's backdoor thaws it (--ssh-thaws, default true). */
  sshThaws?: boolean;
  /** --save-breakpoints: a test that halts is saved as a bundle under this directory and released. */
  saveBreakpoints?: string;
  /** --sign-key: bundles are signed with this private key file (else the user's own). */
  signKey?: string;
  /** --keep-machine-state: machines keep their state in <root>/<test>/<machine> across runs. */
  keepStateRoot?: string;
  /** `name#run`: late errors (worker/late-errors.ts) name the run that caused them. */
  runKey?: string;
  /** Guest image and accelerator for qemu machines, chosen once by the main thread. */
  qemu?: QemuRuntime;
  /** Make the machines of this thread's next run of the test while this one runs (worker/machines-ahead.ts). */
  ahead?: { channel: string; /** How long a set no run takes is kept (default 60 s). */ idleMs?: number };
  port: MessagePort;
}

/**
 * A process of machines taken ahead (worker/machines-ahead.ts), before a run takes them: posted
 * on the BroadcastChannel named by RunTask.ahead, so the main thread's ledger can kill it if the
 * worker dies first. Once a run takes the machines, their processes are that run's (`process`).
 */
export interface AheadProcess {
  worker: number;
  machine: string;
  pid: number;
  alive: boolean;
}

/** What the main thread sends to learn what a test file declares (it loads in a worker,
 *  so a file that throws or exits at import time cannot take down the orchestrator). */
export interface CollectTask {
  kind: "collect";
  file: string;
  defaultBackend: string;
}

export interface CollectedNode {
  name: string;
  backend: string;
  memory: number;
  cores: number;
  /** A Debian guest (node option `image`): what its image is made of, for the main thread to build it. */
  debian?: DebianSpec;
}

export type CollectResult =
  | { ok: true; name: string; nodes: CollectedNode[]; globalTimeout: number; enableDebugHook: boolean; retries?: number }
  | { ok: false; error: string };

export function serializeError(e: unknown): SerializedError {
  let isError = false;
  try {
    isError = e instanceof Error; // a revoked Proxy throws even here
  } catch {
    /* not an Error */
  }
  if (isError) {
    const err = e as object;
    const str = (v: unknown): string | undefined => (typeof v === "string" ? v : v === undefined ? undefined : describeThrown(v));
    const name = str(safeProperty(err, "name")) ?? "Error";
    const message = str(safeProperty(err, "message")) ?? describeThrown(e);
    return { name, message, stack: str(safeProperty(err, "stack")) };
  }
  return { name: "Error", message: describeThrown(e) };
}
