import { threadId } from "node:worker_threads";
import { join } from "node:path";
import { mkdirSync, rmSync } from "node:fs";
import { createMachine } from "../vm/create-machine.ts";
import type { BaseMachine, MachineContext } from "../vm/machine.ts";
import { buildTestContext } from "./test-context.ts";
import { loadTestFile } from "./load-test-file.ts";
import { serializeError, type ControlMessage, type Outcome, type RunTask, type WorkerEvent } from "./events.ts";

/**
 * Run one test file once, to its end: load it, build its machines, run its script, tear
 * everything down, and post a final `done` event. Never throws: every failure is a result.
 */
export async function runTest(task: RunTask): Promise<Outcome> {
  const { port } = task;
  const started = performance.now();
  const emit = (e: WorkerEvent): void => port.postMessage(e);
  emit({ t: "start", time: Date.now(), threadId });

  // The main thread asks us to stop (global timeout, Ctrl-C): the script loses the race.
  let abort!: (e: Error) => void;
  const aborted = new Promise<never>((_, reject) => (abort = reject));
  aborted.catch(() => {});
  port.on("message", (m: ControlMessage) => {
    if (m.t === "abort") abort(new Error(m.reason));
  });

  const machines: BaseMachine[] = [];
  let outcome: Outcome = "passed";
  let error: unknown;
  try {
    const test = await Promise.race([loadTestFile(task.file, task.defaultBackend), aborted]);
    const ctx: MachineContext = {
      log: (machine, msg) => emit({ t: "log", time: Date.now(), machine, msg }),
      trackProcess: (machine, pid, alive) => emit({ t: "process", machine, pid, alive }),
      consolePath: (machine) => join(task.logDir, `${machine}.console.log`),
      stateDir: (machine) => join(task.stateDir, machine),
      outputDir: join(task.logDir, "out"),
    };
    if (test.nodes.length) mkdirSync(task.stateDir, { recursive: true });
    for (const node of test.nodes) machines.push(await createMachine(node, ctx, { accel: "auto" }));
    const debug = {
      breakpoint: async () => {
        emit({ t: "log", time: Date.now(), msg: "debug.breakpoint(): not halting (run with --debug-hook to halt here)" });
      },
    };
    const scriptCtx = buildTestContext(machines, task.runIndex, emit, debug);
    await Promise.race([test.def.testScript(scriptCtx as never), aborted]);
  } catch (e) {
    outcome = "failed";
    error = e;
  }
  // Abort whatever is still waiting on a machine, then tear every machine down.
  await Promise.all(machines.map((m) => m.cleanup()));
  if (machines.length) rmSync(task.stateDir, { recursive: true, force: true });
  emit({
    t: "done",
    time: Date.now(),
    outcome,
    error: error === undefined ? undefined : serializeError(error),
    durationMs: performance.now() - started,
  });
  port.close();
  return outcome;
}
