import { test } from "node:test";
import assert from "node:assert/strict";
import { ResourceBudget, demandOf } from "../../orchestrator/scheduling/resource-budget.ts";
import type { PlannedTest } from "../../orchestrator/selection/plan.ts";

const t = (nodes: PlannedTest["nodes"]): PlannedTest => ({ file: "f", name: "t", nodes, globalTimeout: 1, enableDebugHook: false });

test("only qemu machines count against the budget", () => {
  assert.deepEqual(
    demandOf(t([
      { name: "a", backend: "qemu", memory: 512, cores: 1 },
      { name: "b", backend: "qemu", memory: 1024, cores: 2 },
      { name: "c", backend: "local", memory: 64, cores: 1 },
    ])),
    { memoryMiB: 1536, cores: 3 },
  );
});

test("runs wait rather than overcommit, and are admitted in order as resources return", async () => {
  const b = new ResourceBudget({ memoryMiB: 1024, cores: 2 });
  const order: string[] = [];
  const r1 = await b.acquire({ memoryMiB: 512, cores: 1 });
  const r2 = await b.acquire({ memoryMiB: 512, cores: 1 });
  const p3 = b.acquire({ memoryMiB: 512, cores: 1 }).then((r) => (order.push("3"), r));
  const p4 = b.acquire({ memoryMiB: 512, cores: 1 }).then((r) => (order.push("4"), r));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [], "nothing fits while two runs hold the whole budget");
  assert.equal(b.waiting, 2);
  r1();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ["3"], "one slot freed: exactly one waiter admitted");
  assert.deepEqual(b.inUse, { memoryMiB: 1024, cores: 2 });
  r2();
  (await p3)();
  (await p4)();
  assert.deepEqual(order, ["3", "4"]);
  assert.deepEqual(b.inUse, { memoryMiB: 0, cores: 0 });
});

test("a run that can never fit is refused with the numbers and the flags", () => {
  const b = new ResourceBudget({ memoryMiB: 2048, cores: 2 });
  assert.equal(b.refusal({ memoryMiB: 1024, cores: 2 }), undefined);
  assert.match(b.refusal({ memoryMiB: 4096, cores: 4 })!, /4096 MiB of memory \(budget 2048 MiB, --memory\) and 4 cores \(budget 2, --cores\)/);
});
