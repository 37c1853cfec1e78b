// Machines taken ahead: while a run of a flake hunt goes on, its worker thread makes and starts
// the machines of the next run of the same test, so that run finds them up (a restore costs
// several times a bare QEMU start under TCG, docs/benchmarks.md; this takes it off the run's path).
//
// - The main thread asks for it per run (RunTask.ahead): a hunt of one test, every node a guest,
//   memory for twice the runs, not among the last --jobs runs (orchestrator/scheduling/take-ahead.ts).
// - Made once every machine of the current run is up, or at its script's end if the script
//   started them one by one; not when it started one with start options (`allowReboot`) or
//   created one (`createMachine`): the next run's are made as a plain `start()` makes them.
// - A worker thread holds at most one set. The next run takes it when it is of the same file
//   with the same settings (aheadKey); otherwise the set is torn down, and that run says so.
// - Before a run takes them, the machines belong to no run: their log lines and consoles are
//   held (run-context.ts) and their processes are in the main thread's ledger under this
//   thread's name (AheadProcess on RunTask.ahead.channel), so nothing outlives the orchestrator.
//   A set nobody takes is torn down after an idle time (60 s); the pool's end kills what is left
//   (setpriv's parent-death signal, the ledger) and the state root goes with its directory.
import { BroadcastChannel, threadId } from "node:worker_threads";
import { dirname, join } from "node:path";
import type { AheadProcess, RunTask } from "../common/events.ts";
import type { ResolvedNode } from "../vm/node-options.ts";
import type { BaseMachine } from "../vm/machine.ts";
import { describeThrown } from "../common/describe-thrown.ts";
import { RunContext, type RunTarget } from "./run-context.ts";
import { makeMachines, tearDownMachines, type MakeMachinesOptions, type RunMachines } from "./run-machines.ts";

/** A set of machines taken ahead that no run takes within this long is torn down (RunTask.ahead.idleMs). */
const AHEAD_IDLE_MS = 60_000;

interface Ahead {
  /** What a run must share with the run that made these machines (aheadKey). */
  key: string;
  file: string;
  run: RunMachines;
  channel: BroadcastChannel;
  /** Settles once every machine is up (true) or a start failed and the set is torn down (false). */
  ready: Promise<boolean>;
  /** Why the set failed, and its teardown's lines. */
  failure: string[];
  /** When every machine was up (performance.now()). */
  readyAt?: number;
  idleMs: number;
  idle?: NodeJS.Timeout;
}

let ahead: Ahead | undefined;
let made = 0;

/** What a run must share with the run that took its machines ahead: the file and every setting machines are made with. */
export function aheadKey(task: RunTask, backdoor: MakeMachinesOptions["backdoor"]): string {
  return JSON.stringify([task.file, task.defaultBackend, task.qemu ?? null, backdoor ?? null, task.keepStateRoot ?? null]);
}

/** The run's machines are all up, each started as a plain `start()`: the next run's can be made the same way. */
export function startedPlainly(machines: BaseMachine[], nodes: ResolvedNode[]): boolean {
  return machines.length === nodes.length && nodes.every((n) => n.backend === "qemu") && machines.every((m) => m.state !== "created" && !m.startRequest.allowReboot);
}

/**
 * Make and start, in the background, the machines of this worker's next run of `task`'s test
 * (at most one set per thread: a second call while one is held does nothing).
 */
export function prepareAhead(task: RunTask, nodes: ResolvedNode[], key: string, o: MakeMachinesOptions): void {
  if (!task.ahead || task.keepStateRoot || ahead) return;
  const channel = new BroadcastChannel(task.ahead.channel);
  channel.unref();
  const dir = join(dirname(task.stateDir), `ahead-${threadId}-${++made}`);
  const ctx = new RunContext(dir, undefined, undefined, (machine, pid, alive) => channel.postMessage({ worker: threadId, machine, pid, alive } satisfies AheadProcess));
  const run: RunMachines = { ctx, machines: [] };
  const a: Ahead = { key, file: task.file, run, channel, failure: [], ready: Promise.resolve(false), idleMs: task.ahead.idleMs ?? AHEAD_IDLE_MS };
  a.ready = (async () => {
    try {
      await makeMachines(run, { nodes }, o);
      // All at once, as `startAll()`: the sooner they are up, the less the next run waits.
      await Promise.all(run.machines.map((m) => m.start()));
      a.readyAt = performance.now();
      return true;
    } catch (e) {
      a.failure.push(describeThrown(e instanceof Error ? e.message : e));
      ctx.orphan((machine, msg) => a.failure.push(`${machine}: ${msg}`));
      await tearDownMachines(run, (msg) => a.failure.push(msg));
      channel.close();
      return false;
    }
  })();
  ahead = a;
}

/**
 * The machines taken ahead for this run, if this thread holds a set made for it (same key),
 * all up: routed to the run (`target`) and handed over. A set made for another run is torn
 * down. `log` is the run's; `stopped` rejects when the run is asked to stop while it waits
 * for a set still starting (the set is then torn down).
 */
export async function takeAhead(key: string, target: RunTarget, log: (msg: string) => void, stopped: Promise<never>): Promise<RunMachines | undefined> {
  const a = ahead;
  if (!a) return undefined;
  ahead = undefined;
  clearTimeout(a.idle);
  if (a.key !== key) {
    await release(a, a.file === JSON.parse(key)[0] ? "this run's settings differ" : `they were for ${a.file}`, log);
    return undefined;
  }
  const asked = performance.now();
  let ok: boolean;
  try {
    ok = await Promise.race([a.ready, stopped]);
  } catch (e) {
    void release(a, "the run was stopped", log);
    throw e;
  }
  if (!ok) {
    log(`the machines taken ahead for this run failed to start: ${a.failure.join("; ")}; starting its own`);
    return undefined;
  }
  const down = a.run.machines.filter((m) => m.state !== "running");
  if (down.length) {
    await release(a, `${down.map((m) => `${m.name} is ${m.state}`).join(", ")}`, log);
    return undefined;
  }
  a.run.ctx.route(target, a.run.machines);
  a.channel.close();
  const early = asked - a.readyAt!;
  const when = early >= 0 ? `up ${(early / 1000).toFixed(2)} s before this run began` : `this run waited ${(-early / 1000).toFixed(2)} s for them`;
  log(`machines taken ahead: ${a.run.machines.map((m) => m.name).join(", ")}, started while the run before this one ran (${when})`);
  return a.run;
}

/** The run has ended: a set nobody takes within its idle time (default 60 s) is torn down. */
export function releaseAheadWhenIdle(): void {
  const a = ahead;
  if (!a || a.idle) return;
  a.idle = setTimeout(() => {
    if (ahead !== a) return;
    ahead = undefined;
    void release(a, `no run took them within ${a.idleMs / 1000} s`, () => {}, (msg) => process.stderr.write(`haltpoint: machines taken ahead: ${msg}\n`));
  }, a.idleMs);
  a.idle.unref();
}

async function release(a: Ahead, why: string, log: (msg: string) => void, warn: (msg: string) => void = log): Promise<void> {
  if (!(await a.ready)) return; // torn down already
  // Their teardown's failures are warnings; its other lines (QEMU killed) matter only beside a run.
  a.run.ctx.orphan((machine, msg) => (msg.startsWith("teardown:") ? warn : log)(`${machine}: ${msg}`));
  await tearDownMachines(a.run, warn);
  a.channel.close();
  log(`released the machines taken ahead (${why})`);
}
