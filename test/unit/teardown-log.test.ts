// Teardown errors are a line in the run log each (vm/machine.ts cleanup), and no step's
// failure stops the steps after it: a fake backend whose thaw and dispose fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BaseMachine } from "../../vm/machine.ts";
import { MachineError } from "../../vm/errors.ts";
import { testMachineContext } from "../helpers/machine-context.ts";

/** A backend that starts and freezes, but cannot thaw or release its sockets. */
class FakeStuckMachine extends BaseMachine {
  readonly backend = "local" as const;
  crashed = false;
  protected async doStart(): Promise<void> {}
  protected async doShutdown(): Promise<void> {}
  protected async doCrash(): Promise<void> {
    this.crashed = true;
  }
  protected async doFreeze(): Promise<void> {}
  protected async doThaw(): Promise<void> {
    throw new Error("SIGCONT: no such process");
  }
  protected override async dispose(): Promise<void> {
    throw new Error("socket already closed");
  }
  protected async rawExecute(): Promise<{ status: number; stdout: Buffer }> {
    return { status: 0, stdout: Buffer.alloc(0) };
  }
}

test("a failed thaw and a failed dispose at teardown are logged, and the machine is still stopped", async (t) => {
  const { ctx, logs, cleanup } = testMachineContext();
  t.after(cleanup);
  const m = new FakeStuckMachine("box", {}, ctx);
  await m.start();
  await m.freeze();
  await m.cleanup();
  assert.ok(logs.includes("box: teardown: thaw failed: SIGCONT: no such process"), logs.join("\n"));
  assert.ok(logs.includes("box: teardown: releasing its sockets failed: socket already closed"), logs.join("\n"));
  assert.equal(m.crashed, true, "the steps after the failed thaw still ran: the machine was stopped");
  assert.equal(m.state, "stopped");
});

test("a start that throws is a boot failure (the report's kind), a failed command is command-failed", async (t) => {
  const { ctx, cleanup } = testMachineContext();
  t.after(cleanup);
  class FakeNoBoot extends FakeStuckMachine {
    protected override async doStart(): Promise<void> {
      throw this.error("no backdoor shell within 1 s");
    }
  }
  await assert.rejects(new FakeNoBoot("box", {}, ctx).start(), (e) => e instanceof MachineError && e.kind === "boot-failed");
  class FakeFalse extends FakeStuckMachine {
    protected override async rawExecute(): Promise<{ status: number; stdout: Buffer }> {
      return { status: 1, stdout: Buffer.alloc(0) };
    }
  }
  const f = new FakeFalse("box", {}, ctx);
  await assert.rejects(f.succeed("false"), (e) => e instanceof MachineError && e.kind === "command-failed");
});
