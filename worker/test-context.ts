import type { DebugApi, TestContext } from "../index.ts";
import type { VmMachine } from "../vm/types.ts";
import type { BaseMachine } from "../vm/machine.ts";
import { DEFAULT_WAIT_SECONDS, pollUntil } from "../vm/poll.ts";
import { serializeError, type WorkerEvent } from "../common/events.ts";
import type { DriverApi } from "./driver-api.ts";

/** Build the object a test script receives: its machines by name, and the helpers. */
export function buildTestContext(
  machines: BaseMachine[],
  run: number,
  emit: (e: WorkerEvent) => void,
  debug: DebugApi,
  attempt = 1,
  driver?: DriverApi,
): TestContext {
  const log = (msg: string): void => emit({ t: "log", time: Date.now(), msg });
  const ctx: Record<string, unknown> = {
    machines,
    run,
    attempt,
    debug,
    log,
    async startAll() {
      await Promise.all(machines.map((m) => m.start()));
    },
    async joinAll(opts: { timeout?: number } = {}) {
      // A local sandbox's waitForShutdown is the NotSupportedError that names it and its backend.
      await Promise.all(machines.map((m) => (m as unknown as VmMachine).waitForShutdown(opts)));
    },
    async subtest<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
      const start = performance.now();
      emit({ t: "subtest", time: Date.now(), name, phase: "start" });
      try {
        const r = await fn();
        emit({ t: "subtest", time: Date.now(), name, phase: "pass", durationMs: performance.now() - start });
        return r;
      } catch (e) {
        emit({ t: "subtest", time: Date.now(), name, phase: "fail", durationMs: performance.now() - start, error: serializeError(e) });
        throw e;
      }
    },
    async retry(fn: (lastTry: boolean) => boolean | Promise<boolean>, opts: { timeout?: number } = {}) {
      const timeout = opts.timeout ?? DEFAULT_WAIT_SECONDS;
      const deadline = Date.now() + timeout * 1000;
      await pollUntil("retry() to return true", timeout, async () =>
        (await fn(Date.now() + 1000 >= deadline)) ? { done: true, value: undefined } : { done: false, last: "" },
      );
    },
  };
  if (driver) {
    ctx.pollingCondition = driver.pollingCondition.bind(driver);
    ctx.createMachine = driver.createMachine.bind(driver);
    ctx.serialStdout = driver.serialStdout.bind(driver);
  }
  for (const m of machines) ctx[m.name] = m;
  // NixOS: a test with a single node also has it as `machine`.
  if (machines.length === 1 && !("machine" in ctx)) ctx.machine = machines[0];
  return ctx as TestContext;
}
