// Teardown errors are a line in the run log each (vm/machine.ts cleanup), and no step's
// failure stops the steps after it: a fake backend whose thaw and dispose fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BaseMachine } from "../../vm/machine.ts";
import { MachineError } from "../../vm/errors.ts";
import { testMachineContext } from "../helpers/machine-context.ts";
import { bestEffort } from "../../common/teardown.ts";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

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

test("bestEffort: a failed step (a rejected promise, or a function that throws) is one log line naming it, and never throws", async () => {
  const lines: string[] = [];
  const log = (m: string) => lines.push(m);
  await bestEffort(log, "closing the control socket", Promise.reject(new Error("EBADF")));
  await bestEffort(log, "removing /var/tmp/hp-x", () => {
    throw new Error("EACCES: permission denied");
  });
  let ran = false;
  await bestEffort(log, "a step that works", async () => {
    ran = true;
  });
  assert.deepEqual(lines, ["teardown: closing the control socket failed: EBADF", "teardown: removing /var/tmp/hp-x failed: EACCES: permission denied"]);
  assert.equal(ran, true);
});

test("no teardown path swallows an error without a log line: each `.catch(() => {})` left says why it is not one", () => {
  const hits = execFileSync("git", ["grep", "-n", "-E", "catch\\(\\(\\) => \\{\\}\\)", "--", "common", "vm", "hooks", "worker", "orchestrator"], { encoding: "utf8", cwd: join(import.meta.dirname, "..", "..") })
    .split("\n")
    .filter(Boolean);
  // Each remaining one is not a teardown (a race's loser, a command sent and not waited for, a
  // killed process's expected rejection) and says so in a comment on its line or the one before.
  const root = join(import.meta.dirname, "..", "..");
  for (const h of hits) {
    const [file, line] = h.split(":") as [string, string];
    const lines = readFileSync(join(root, file), "utf8").split("\n");
    const here = lines[Number(line) - 1]!;
    const before = lines[Number(line) - 2]!;
    assert.ok(here.includes("// ") || before.trim().startsWith("//"), `a silent catch with no reason given: ${h}`);
  }
});
