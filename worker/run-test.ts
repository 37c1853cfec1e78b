import { threadId } from "node:worker_threads";
import { join } from "node:path";
import { mkdirSync, rmSync } from "node:fs";
import { createMachine } from "../vm/create-machine.ts";
import type { BaseMachine, MachineContext } from "../vm/machine.ts";
import { BreakpointHook } from "../hooks/breakpoints/breakpoint-hook.ts";
import type { RunNetwork } from "../vm/qemu/run-network.ts";
import type { SshBackdoor } from "../hooks/ssh/ssh-backdoor.ts";
import { buildTestContext } from "./test-context.ts";
import { DriverApi } from "./driver-api.ts";
import { loadTestFile } from "./load-test-file.ts";
import { dirNameFor } from "../common/run-dir-names.ts";
import { serializeError, type TaskControl, type Outcome, type RunTask, type WorkerEvent } from "../common/events.ts";
import { scriptFailureKind } from "./script-failure.ts";
import type { AbortCause } from "../common/failure-kinds.ts";

/**
 * Run one test file once, to its end: load it, build its machines, run its script, halt at
 * a breakpoint if it fails with the debug hook on, tear everything down, and post a final
 * `done` event. Never throws: every failure is a result.
 */
export async function runTest(task: RunTask, lateError: Promise<never> = new Promise<never>(() => {})): Promise<Outcome> {
  const { port } = task;
  const started = performance.now();
  const emit = (e: WorkerEvent): void => port.postMessage(e);
  emit({ t: "start", time: Date.now(), threadId });

  // The main thread asks us to stop (global timeout, Ctrl-C): the script loses the race.
  let abortedBy: AbortCause | undefined;
  let abort!: (e: Error) => void;
  const aborted = new Promise<never>((_, reject) => (abort = reject));
  aborted.catch(() => {}); // a race's loser when no abort comes; the race sees it when one does
  let hook: BreakpointHook | undefined;
  port.on("message", (m: TaskControl) => {
    if (m.t === "abort") {
      abortedBy = m.cause;
      abort(new Error(`stopped by the orchestrator (${m.cause.kind})`)); // never reported: `done` carries `aborted`
    }
    hook?.onControl(m);
  });

  const machines: BaseMachine[] = [];
  let network: RunNetwork | undefined;
  let backdoor: SshBackdoor | undefined;
  let outcome: Outcome = "passed";
  let error: unknown;
  let debugHook = task.debugHook;
  try {
    const test = await Promise.race([loadTestFile(task.file, task.defaultBackend), aborted]);
    debugHook ||= test.enableDebugHook;
    const ctx: MachineContext = {
      log: (machine, msg) => emit({ t: "log", time: Date.now(), machine, msg }),
      trackProcess: (machine, pid, alive) => emit({ t: "process", machine, pid, alive }),
      consolePath: (machine) => join(task.logDir, `${machine}.console.log`),
      stateDir: (machine) => join(task.stateDir, machine),
      keptStateDir: task.keepStateRoot ? (machine) => join(task.keepStateRoot!, dirNameFor(test.name), machine) : undefined,
      outputDir: join(task.logDir, "out"),
      started: (machine) => backdoor?.announce(machine),
      aroundCommand: () => driver.conditions.checkAll(),
    };
    let scriptCtx: Record<string, unknown> = {};
    const driver = new DriverApi(machines, ctx, { qemu: task.qemu }, task.defaultBackend, emit, (m) => (scriptCtx[m.name] ??= m));
    if (test.nodes.length) mkdirSync(task.stateDir, { recursive: true });
    if (test.nodes.some((n) => n.backend === "qemu")) {
      const { RunNetwork } = await import("../vm/qemu/run-network.ts");
      network = new RunNetwork(task.stateDir, test.nodes);
    }
    for (const node of test.nodes) machines.push(await createMachine(node, ctx, { qemu: task.qemu, network }));
    if (machines.length && (task.sshBackdoor ?? test.sshBackdoor ?? debugHook)) {
      const { SshBackdoor } = await import("../hooks/ssh/ssh-backdoor.ts");
      backdoor = await SshBackdoor.open(machines, { dir: task.stateDir, thaws: task.sshThaws ?? true, log: ctx.log });
    }
    hook = new BreakpointHook(port, machines, emit, `${test.name}#${task.runIndex}`, backdoor?.dir, backdoor?.sockets(), {
      subject: {
        test: { name: test.name, file: task.file, run: task.runIndex, key: `${test.name}#${task.runIndex}` },
        sshBackdoor: backdoor !== undefined,
        accel: task.qemu?.accel,
        consolePath: ctx.consolePath,
      },
      saveDir: task.saveBreakpoints,
    });
    const debug = {
      breakpoint: async () => {
        if (!debugHook) {
          emit({ t: "log", time: Date.now(), msg: "debug.breakpoint(): not halting (run with --debug-hook to halt here)" });
          return;
        }
        emit({ t: "log", time: Date.now(), msg: "debug.breakpoint(): halting" });
        await Promise.race([hook!.halt("breakpoint"), aborted]);
      },
    };
    scriptCtx = buildTestContext(machines, task.runIndex, emit, debug, task.attempt ?? 1, driver) as Record<string, unknown>;
    // A timer or promise of this run's that throws with nobody awaiting it fails the run (late-errors.ts).
    await Promise.race([test.def.testScript(scriptCtx as never), aborted, lateError]);
  } catch (e) {
    outcome = "failed";
    error = e;
    // A failure the test itself hit (not the orchestrator stopping it) halts with the hook on.
    if (debugHook && hook && abortedBy === undefined) await hook.halt("failure", e);
  }
  // Abort whatever is still waiting on a machine, then tear every machine down.
  // Teardown errors are a line in the run log each; none fails the run or stops the rest.
  const teardownFailed = (what: string) => (e: unknown) => emit({ t: "log", time: Date.now(), level: "warn", msg: `teardown: ${what} failed: ${e instanceof Error ? e.message : String(e)}` });
  await backdoor?.close().catch(teardownFailed("closing the ssh backdoor"));
  await Promise.all(machines.map((m) => m.cleanup()));
  await network?.close().catch(teardownFailed("closing the virtual network"));
  if (machines.length) {
    try {
      rmSync(task.stateDir, { recursive: true, force: true });
    } catch (e) {
      // The main thread's sweep of abandoned state roots removes it later.
      teardownFailed(`removing the state directory ${task.stateDir}`)(e);
    }
  }
  emit({
    t: "done",
    time: Date.now(),
    outcome,
    ...(abortedBy !== undefined && outcome === "failed"
      ? { aborted: abortedBy } // the words are the main thread's (reporters/failure-text.ts)
      : { error: error === undefined ? undefined : serializeError(error), ...(error === undefined ? {} : { failureKind: scriptFailureKind(error) }) }),
    durationMs: performance.now() - started,
  });
  port.close();
  return outcome;
}
