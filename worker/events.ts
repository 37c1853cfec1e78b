import type { MessagePort } from "node:worker_threads";

// The messages between a worker running a test and the main thread. Events flow one way,
// worker → main, on the task's MessagePort; the only main → worker messages are control
// requests (abort). Everything here must survive structured clone.

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
  /** The last message of a run. The main thread waits for it before treating the run as finished. */
  | { t: "done"; time: number; outcome: Outcome; error?: SerializedError; durationMs: number };

export type ControlMessage = { t: "abort"; reason: string };

/** What the main thread sends to run one test. */
export interface RunTask {
  kind: "run";
  file: string;
  runIndex: number;
  /** Backend of nodes that name none. */
  defaultBackend: string;
  logDir: string;
  /** Directory for this run's machine state (sockets, sandboxes). */
  stateDir: string;
  port: MessagePort;
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
}

export type CollectResult =
  | { ok: true; name: string; nodes: CollectedNode[]; globalTimeout: number; enableDebugHook: boolean }
  | { ok: false; error: string };

export function serializeError(e: unknown): SerializedError {
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { name: "Error", message: String(e) };
}
