import { threadId } from "node:worker_threads";
import { join } from "node:path";
import { BreakpointHook } from "../hooks/breakpoints/breakpoint-hook.ts";
import { RunContext, type RunTarget } from "./run-context.ts";
import { makeMachines, tearDownMachines, type MakeMachinesOptions, type RunMachines } from "./run-machines.ts";
import { aheadKey, prepareAhead, releaseAheadWhenIdle, startedPlainly, takeAhead } from "./machines-ahead.ts";
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

  let run: RunMachines | undefined;
  let outcome: Outcome = "passed";
  let error: unknown;
  let debugHook = task.debugHook;
  try {
    const test = await Promise.race([loadTestFile(task.file, task.defaultBackend), aborted]);
    debugHook ||= test.enableDebugHook;
    const target: RunTarget = {
      log: (machine, msg, time) => emit({ t: "log", time, machine, msg }),
      trackProcess: (machine, pid, alive) => emit({ t: "process", machine, pid, alive }),
      consolePath: (machine) => join(task.logDir, `${machine}.console.log`),
      outputDir: join(task.logDir, "out"),
      started: (machine) => {
        run?.backdoor?.announce(machine);
        // Every machine up: the next run's can start beside this one (machines-ahead.ts).
        if (run && startedPlainly(run.machines, test.nodes) && run.machines.every((m) => m.isUp)) prepareAhead(task, test.nodes, key, made);
      },
      aroundCommand: () => driver.conditions.checkAll(),
    };
    const made: MakeMachinesOptions = {
      qemu: task.qemu,
      ...((task.sshBackdoor ?? test.sshBackdoor ?? debugHook) && test.nodes.length ? { backdoor: { thaws: task.sshThaws ?? true } } : {}),
    };
    const key = aheadKey(task, made.backdoor);
    const say = (msg: string): void => emit({ t: "log", time: Date.now(), msg });
    run = await takeAhead(key, target, say, aborted);
    const keptStateDir = task.keepStateRoot ? (machine: string) => join(task.keepStateRoot!, dirNameFor(test.name), machine) : undefined;
    const ctx = run?.ctx ?? new RunContext(task.stateDir, target, keptStateDir);
    const machines = run?.machines ?? [];
    let scriptCtx: Record<string, unknown> = {};
    const driver = new DriverApi(machines, ctx, { qemu: task.qemu }, task.defaultBackend, emit, (m) => (scriptCtx[m.name] ??= m));
    if (run) {
      for (const m of machines) target.started(m.name); // what starting them would have said
    } else {
      run = { ctx, machines };
      await makeMachines(run, test, made);
    }
    const { backdoor } = run;
    hook = new BreakpointHook(port, machines, emit, `${test.name}#${task.runIndex}`, backdoor?.dir, backdoor?.sockets(), {
      subject: {
        test: { name: test.name, file: task.file, run: task.runIndex, key: `${test.name}#${task.runIndex}` },
        sshBackdoor: backdoor !== undefined,
        accel: task.qemu?.accel,
        consolePath: (machine) => ctx.consolePath(machine),
        ...(task.signKey ? { signKey: task.signKey } : {}),
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
    // Its machines were never all up at once (the script started one after shutting another
    // down, say): the next run's are made now, while this one tears down (if not made already).
    if (startedPlainly(machines, test.nodes)) prepareAhead(task, test.nodes, key, made);
  } catch (e) {
    outcome = "failed";
    error = e;
    // A failure the test itself hit (not the orchestrator stopping it) halts with the hook on.
    if (debugHook && hook && abortedBy === undefined) await hook.halt("failure", e);
  }
  // Abort whatever is still waiting on a machine, then tear every machine down.
  // Teardown errors are a line in the run log each; none fails the run or stops the rest.
  if (run) await tearDownMachines(run, (msg) => emit({ t: "log", time: Date.now(), level: "warn", msg }));
  releaseAheadWhenIdle();
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
