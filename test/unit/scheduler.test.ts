// The scheduler driven by a fake worker pool and a fake broker: no worker threads, no
// processes, milliseconds per test. Each fake answers on the task's port the way the real
// worker (worker/run-test.ts) and breakpoint hook (hooks/breakpoints/breakpoint-hook.ts) do.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import { Scheduler } from "../../orchestrator/scheduling/scheduler.ts";
import type { RunLedger, TaskPool } from "../../orchestrator/scheduling/worker-attempt.ts";
import type { HaltBroker } from "../../orchestrator/scheduling/broker-adapter.ts";
import type { RunResult } from "../../orchestrator/results.ts";
import { ReporterSet } from "../../orchestrator/report-events.ts";
import { ResourceBudget } from "../../orchestrator/scheduling/resource-budget.ts";
import { expandRuns, type PlannedTest } from "../../orchestrator/selection/plan.ts";
import type { BreakpointInfo } from "../../hooks/control/control-protocol.ts";
import type { RunTask, TaskControl, WorkerEvent } from "../../common/events.ts";
import type { AbortCause, Notice } from "../../common/failure-kinds.ts";
import { failureReason } from "../../orchestrator/reporters/failure-text.ts";
import { RunClock } from "../../orchestrator/scheduling/run-clock.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

/** What one fake attempt does, given its port: the task resolves when it returns, rejects when it throws. */
type FakeScript = (w: FakeWorkerSide, task: RunTask) => Promise<void>;

/** The worker's end of one task's port, with the messages it got from the scheduler. */
class FakeWorkerSide {
  readonly control: TaskControl[] = [];
  private waiters: Array<{ t: TaskControl["t"]; resolve: (m: TaskControl) => void }> = [];
  constructor(
    readonly port: MessagePort,
    readonly signal: AbortSignal | undefined,
  ) {
    port.on("message", (m: TaskControl) => {
      this.control.push(m);
      for (const w of this.waiters.filter((x) => x.t === m.t)) w.resolve(m);
      this.waiters = this.waiters.filter((x) => x.t !== m.t);
    });
  }
  emit(e: WorkerEvent, transfer: MessagePort[] = []): void {
    this.port.postMessage(e, transfer);
  }
  start(): void {
    this.emit({ t: "start", time: Date.now(), threadId: 0 });
  }
  done(outcome: "passed" | "failed", message?: string): void {
    this.emit({ t: "done", time: Date.now(), outcome, durationMs: 1, ...(message ? { error: { name: "Error", message }, failureKind: "assertion" as const } : {}) });
  }
  /** The script lost its race to the orchestrator's abort: `done` carries the cause, no words. */
  aborted(cause: AbortCause): void {
    this.emit({ t: "done", time: Date.now(), outcome: "failed", durationMs: 1, aborted: cause });
  }
  /** The next control message of this type (or one that already came). */
  next<T extends TaskControl["t"]>(t: T): Promise<Extract<TaskControl, { t: T }>> {
    const seen = this.control.find((m) => m.t === t);
    if (seen) return Promise.resolve(seen as Extract<TaskControl, { t: T }>);
    return new Promise((resolve) => this.waiters.push({ t, resolve: resolve as (m: TaskControl) => void }));
  }
  /** Halt like the hook: post `halt`, wait for the broker's answer, then for `release`, then post `resumed`. */
  async halt(kind: "failure" | "breakpoint"): Promise<void> {
    const { port2 } = new MessageChannel();
    this.emit({ t: "halt", time: Date.now(), kind, machines: ["m"], frozen: ["m"], console: port2 }, [port2]);
    const answer = await Promise.race([this.next("halted"), this.next("halt-refused")]);
    if (answer.t === "halt-refused") return;
    const release = await this.next("release");
    this.emit({ t: "resumed", time: Date.now(), by: release.by });
  }
}

/** A fake of piscina: runs each task's script on the task's own port, in this thread. */
class FakeWorkerPool implements TaskPool {
  readonly tasks: RunTask[] = [];
  constructor(private readonly script: FakeScript) {}
  async run(task: RunTask, options?: { signal?: AbortSignal }): Promise<unknown> {
    this.tasks.push(task);
    const w = new FakeWorkerSide(task.port, options?.signal);
    const killed = new Promise<never>((_, reject) => options?.signal?.addEventListener("abort", () => reject(new Error("The task has been aborted"))));
    killed.catch(() => {});
    try {
      return await Promise.race([this.script(w, task), killed]);
    } finally {
      task.port.close();
    }
  }
}

/** A fake of the breakpoint broker: holds every halt; the test releases it. */
class FakeBroker implements HaltBroker {
  readonly held = new Map<string, MessagePort>();
  readonly endedCalls: Array<[string, string]> = [];
  private nextId = 1;
  private onHeld: (() => void) | undefined;
  get count(): number {
    return this.held.size;
  }
  async register(_run: unknown, e: Extract<WorkerEvent, { t: "halt" }>, port: MessagePort): Promise<BreakpointInfo> {
    e.console.close();
    const id = String(this.nextId++);
    this.held.set(id, port);
    port.postMessage({ t: "halted", id, host: "127.0.0.1", port: 1, socketDir: "/nonexistent" } satisfies TaskControl);
    this.onHeld?.();
    return { id } as BreakpointInfo;
  }
  release(id: string, by: string): boolean {
    const port = this.held.get(id);
    if (!port) return false;
    port.postMessage({ t: "release", by } satisfies TaskControl);
    return true;
  }
  async ended(id: string, by: string): Promise<void> {
    this.held.delete(id);
    this.endedCalls.push([id, by]);
  }
  /** Resolves when some halt is held. */
  whenHeld(): Promise<void> {
    return new Promise((r) => (this.onHeld = r));
  }
}

class FakeLedger implements RunLedger {
  constructor(private readonly leftovers: string[] = []) {}
  add(): void {}
  remove(): void {}
  killRun(): string[] {
    return this.leftovers;
  }
}

function testOf(name: string, o: Partial<PlannedTest> = {}): PlannedTest {
  return { file: `/fake/${name}.vmtest.ts`, name, nodes: [], globalTimeout: 60, enableDebugHook: false, ...o };
}

function setup(script: FakeScript, o: { jobs?: number; untilFail?: boolean; retries?: number; broker?: FakeBroker; ledger?: RunLedger; abortGraceMs?: number; budget?: ResourceBudget } = {}) {
  const log: string[] = [];
  const notices: Notice[] = [];
  const reporters = new ReporterSet([
    {
      report: (e) => {
        if (e.kind === "run-start") log.push(`${e.run.key} run-start`);
        else if (e.kind === "worker-event") log.push(`${e.run.key} ${e.event.t}`);
        else if (e.kind === "retry") log.push(`${e.run.key} retry ${e.next}`);
        else if (e.kind === "run-end") log.push(`${e.result.run.key} end ${e.result.outcome}`);
        else if (e.kind === "notice") notices.push(e.notice);
      },
    },
  ]);
  const pool = new FakeWorkerPool(script);
  const scheduler = new Scheduler({
    pool,
    jobs: o.jobs ?? 1,
    reporters,
    ledger: o.ledger ?? new FakeLedger(),
    logDir: "/fake/logs",
    stateRoot: tempDir("hp-sched-"),
    defaultBackend: "local",
    abortGraceMs: o.abortGraceMs ?? 5000,
    untilFail: o.untilFail ?? false,
    retries: o.retries,
    budget: o.budget ?? new ResourceBudget({ jobs: o.jobs ?? 1, memoryMiB: 1024, cores: 2, cpuOvercommit: 1 }),
    broker: o.broker,
    debugHook: true,
    // Only waited for when `done` is late: generous, since this host is shared and loaded.
    doneWaitMs: 2000,
  });
  return { scheduler, pool, log, notices };
}

const byKey = (results: RunResult[]) => new Map(results.map((r) => [r.run.key, r]));

test("a failure halts: halt → held → release → resumed → done, its slot is free meanwhile, and it is not retried", async () => {
  const broker = new FakeBroker();
  const { scheduler, log } = setup(
    async (w, task) => {
      w.start();
      if (task.runIndex === 1) await w.halt("failure");
      w.done(task.runIndex === 1 ? "failed" : "passed", task.runIndex === 1 ? "boom" : undefined);
    },
    { broker, retries: 2 },
  );
  const held = broker.whenHeld();
  const all = scheduler.runAll(expandRuns([testOf("t")], 2));
  await held;
  // With --jobs 1, run 2 can only finish while run 1 is halted: its slot was given back.
  while (!log.includes("t#2 end passed")) await new Promise((r) => setImmediate(r));
  assert.ok(!log.includes("t#1 resumed"), "run 2 ended while run 1 was still halted");
  broker.release("1", "haltpoint release");
  const results = byKey(await all);
  const t1 = log.filter((l) => l.startsWith("t#1"));
  assert.deepEqual(t1, ["t#1 run-start", "t#1 start", "t#1 halt", "t#1 resumed", "t#1 done", "t#1 end failed"]);
  const r1 = results.get("t#1")!;
  assert.equal(r1.attempts.length, 1, "a failure decided at a breakpoint is not retried");
  assert.equal(r1.failure?.kind, "assertion");
  assert.equal(r1.attempts[0]!.halts?.[0]?.by, "haltpoint release");
  assert.ok(r1.attempts[0]!.halts![0]!.durationMs >= 0);
  assert.deepEqual(broker.endedCalls, [["1", "haltpoint release"]]);
  assert.equal(results.get("t#2")!.outcome, "passed");
});

test("retries: a failed attempt is run again in its own log dir; failed then passed is flaky", async () => {
  const { scheduler, log, pool } = setup(
    async (w, task) => {
      w.start();
      w.done(task.attempt === 1 ? "failed" : "passed", task.attempt === 1 ? "first try fails" : undefined);
    },
    { retries: 1 },
  );
  const [r] = await scheduler.runAll(expandRuns([testOf("f")], 1));
  assert.equal(r!.outcome, "flaky");
  assert.deepEqual(r!.attempts.map((a) => a.outcome), ["failed", "passed"]);
  assert.deepEqual(pool.tasks.map((t) => t.logDir), ["/fake/logs/f#1", "/fake/logs/f#1/try2"]);
  assert.deepEqual(log, ["f#1 run-start", "f#1 start", "f#1 done", "f#1 retry 2", "f#1 start", "f#1 done", "f#1 end flaky"]);
});

test("--until-fail: the first failed run stops admission, the report knows why", async () => {
  const { scheduler, notices, pool } = setup(
    async (w, task) => {
      w.start();
      w.done(task.runIndex === 2 ? "failed" : "passed", task.runIndex === 2 ? "run 2 fails" : undefined);
    },
    { untilFail: true },
  );
  const results = await scheduler.runAll(expandRuns([testOf("u")], 10));
  assert.deepEqual(results.map((r) => `${r.run.key} ${r.outcome}`), ["u#1 passed", "u#2 failed"]);
  assert.equal(pool.tasks.length, 2, "no run was handed to the pool after the failure");
  assert.deepEqual(scheduler.stopReason, { kind: "until-fail", run: "u#2", flaky: false });
  assert.deepEqual(notices, [{ kind: "stopped", stop: { kind: "until-fail", run: "u#2", flaky: false } }]);
});

test("a crashed worker: the attempt fails as worker-crashed with the pool's message, and leftovers are named", async () => {
  const { scheduler } = setup(
    async (w) => {
      w.start();
      throw new Error("worker exited with code: 3");
    },
    { ledger: new FakeLedger(["m"]) },
  );
  const [r] = await scheduler.runAll(expandRuns([testOf("c")], 1));
  assert.equal(r!.outcome, "failed");
  assert.deepEqual(r!.failure, { kind: "worker-crashed", message: "worker exited with code: 3", also: [{ kind: "leftovers", machines: ["m"] }] });
});

test("a global timeout: the worker is asked to abort with its cause, and the attempt fails as global-timeout", async () => {
  const { scheduler } = setup(async (w) => {
    w.start();
    const abort = await w.next("abort");
    w.aborted(abort.cause);
  });
  const [r] = await scheduler.runAll(expandRuns([testOf("slow", { globalTimeout: 0.02 })], 1));
  assert.equal(r!.failure?.kind, "global-timeout");
  assert.equal(r!.failure?.kind === "global-timeout" && r!.failure.seconds, 0.02);
  assert.equal(r!.failure?.scriptSaw, undefined, "the worker put nothing into words");
  assert.equal(r!.failure?.also, undefined, "the abort is the only cause");
  assert.equal(failureReason(r!.failure!), "global timeout of 0.02 s exceeded", "the words are the reporters'");
});

test("a worker that ignores the abort is killed after the grace: global-timeout, then worker-killed", async () => {
  const { scheduler } = setup(
    async (w) => {
      w.start();
      await new Promise<void>((r) => w.signal?.addEventListener("abort", () => r()));
      await new Promise(() => {}); // never answers: only the kill ends it
    },
    { abortGraceMs: 10 },
  );
  const [r] = await scheduler.runAll(expandRuns([testOf("stuck", { globalTimeout: 0.01 })], 1));
  assert.equal(r!.failure?.kind, "global-timeout");
  assert.deepEqual(r!.failure?.also, [{ kind: "worker-killed", graceMs: 10 }]);
});

test("Ctrl-C: running tests are aborted as interrupted, with the signal, and admission stops", async () => {
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const { scheduler, pool } = setup(async (w) => {
    w.start();
    started();
    const abort = await w.next("abort");
    w.aborted(abort.cause);
  });
  const all = scheduler.runAll(expandRuns([testOf("i")], 5));
  await running;
  scheduler.interrupt("SIGINT");
  const results = await all;
  assert.equal(results.length, 1);
  assert.equal(pool.tasks.length, 1);
  assert.deepEqual(results[0]!.failure && { kind: results[0]!.failure.kind, signal: (results[0]!.failure as { signal?: string }).signal }, { kind: "interrupted", signal: "SIGINT" });
  assert.deepEqual(scheduler.stopReason, { kind: "interrupted", signal: "SIGINT" });
  assert.equal(scheduler.interruptedWork, true);
});

test("stop(superseded) (watch mode): the running test is aborted with that cause, its result carries it, and admission stops", async () => {
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  let seen: unknown;
  const { scheduler, pool } = setup(async (w) => {
    w.start();
    started();
    const abort = await w.next("abort");
    seen = abort.cause;
    w.aborted(abort.cause);
  });
  const all = scheduler.runAll(expandRuns([testOf("w")], 3));
  await running;
  scheduler.stop({ kind: "superseded", by: "tests/w.vmtest.ts changed" });
  const results = await all;
  assert.equal(pool.tasks.length, 1, "no further run admitted");
  assert.deepEqual(seen, { kind: "superseded", by: "tests/w.vmtest.ts changed" }, "the worker is told why");
  assert.equal(results[0]!.failure?.kind, "superseded");
  assert.equal(failureReason(results[0]!.failure!), "superseded: tests/w.vmtest.ts changed");
  assert.deepEqual(scheduler.stopReason, { kind: "superseded", by: "tests/w.vmtest.ts changed" });
});

test("the run clock: the global timeout counts only running time, not time halted", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
  let timedOut = 0;
  const clock = new RunClock({ timeoutMs: 100, onTimeout: () => timedOut++, isHalted: () => false });
  clock.start();
  t.mock.timers.tick(60);
  clock.pause(); // halted for a long time
  t.mock.timers.tick(10_000);
  assert.equal(timedOut, 0, "no timeout while halted");
  clock.start();
  t.mock.timers.tick(39);
  assert.equal(timedOut, 0, "99 ms of running time");
  t.mock.timers.tick(1);
  assert.equal(timedOut, 1, "the 100th ms of running time times it out");
  clock.stop();
});

test("the run clock: SLOW events every slow timeout, none while halted", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
  const slow: number[] = [];
  let halted = false;
  const clock = new RunClock({ timeoutMs: 10_000, onTimeout: () => {}, slowMs: 50, onSlow: (ms) => void slow.push(ms), isHalted: () => halted });
  clock.start();
  t.mock.timers.tick(100);
  assert.equal(slow.length, 2);
  assert.ok(slow[1]! >= 100, "never less than the thresholds crossed");
  halted = true;
  t.mock.timers.tick(100);
  assert.equal(slow.length, 2, "not reported while halted");
  clock.stop();
  halted = false;
  t.mock.timers.tick(100);
  assert.equal(slow.length, 2, "stopped");
});

const guests = (n: number): PlannedTest["nodes"] => Array.from({ length: n }, (_, i) => ({ name: `m${i}`, backend: "qemu", memory: 256, cores: 1 }));

test("admission: a 1-guest run starts while a 2-guest run waits for room; a run over the vCPU budget runs alone, told once; one over memory fails at once", async () => {
  // Each fake run holds its vCPUs until the test lets it end, so the order is decided by admission alone.
  const ends = new Map<string, () => void>();
  const ended = (name: string) => ends.get(name)?.();
  let onStarted: (() => void) | undefined;
  const { scheduler, log, notices } = setup(
    async (w, task) => {
      w.start();
      await new Promise<void>((r) => {
        ends.set(task.runKey!.split("#")[0]!, r);
        onStarted?.();
      });
      w.done("passed");
    },
    { jobs: 4, budget: new ResourceBudget({ jobs: 4, memoryMiB: 4096, cores: 2, cpuOvercommit: 2, passLimit: 4 }) },
  );
  const whenStarted = (n: number) =>
    new Promise<void>((r) => {
      onStarted = () => ends.size >= n && r();
      if (ends.size >= n) r();
    });
  const tests = [
    testOf("three", { nodes: guests(3) }),
    testOf("two", { nodes: guests(2) }),
    testOf("one", { nodes: guests(1) }),
    testOf("five", { nodes: guests(5) }),
    testOf("ram", { nodes: [{ name: "big", backend: "qemu", memory: 8192, cores: 1 }] }),
  ];
  const all = scheduler.runAll(expandRuns(tests, 1));
  await whenStarted(2);
  const starts = () => log.filter((l) => l.endsWith(" run-start") && !l.startsWith("ram#")).map((l) => l.split("#")[0]);
  assert.deepEqual(starts(), ["three", "one"], "3 of 4 vCPUs taken: 'two' waits, 'one' fits and starts");
  assert.ok(log.includes("ram#1 end failed"), "over --memory: failed at once");
  assert.deepEqual(notices, [{ kind: "runs-alone", test: "five", vcpus: 5, budget: { vcpus: 4, cores: 2, cpuOvercommit: 2 } }]);
  ended("three");
  await whenStarted(3);
  assert.deepEqual(starts(), ["three", "one", "two"]);
  ended("one");
  ended("two");
  await whenStarted(4);
  assert.deepEqual(starts(), ["three", "one", "two", "five"], "five starts only once no qemu run is left");
  ended("five");
  const results = byKey(await all);
  assert.equal(results.get("three#1")!.outcome, "passed", JSON.stringify(results.get("three#1")!.failure));
  assert.deepEqual([...results.values()].map((r) => `${r.run.key} ${r.outcome}`).sort(), ["five#1 passed", "one#1 passed", "ram#1 failed", "three#1 passed", "two#1 passed"]);
  assert.deepEqual(results.get("ram#1")!.failure, { kind: "not-admitted", over: { memoryMiB: { need: 8192, budget: 4096 } } });
});
