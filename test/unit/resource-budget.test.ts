// The admission budget on its own: run slots (--jobs), memory (a hard limit) and vCPUs
// (--cores × --cpu-overcommit, never refused), backfilling with a bound on how often a
// waiting run is passed over, and running alone. No processes: the rule, step by step.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ResourceBudget, demandOf, type Lease, type Resources } from "../../orchestrator/scheduling/resource-budget.ts";
import type { PlannedTest } from "../../orchestrator/selection/plan.ts";
import { noticeText, overrunText } from "../../orchestrator/reporters/failure-text.ts";

const t = (nodes: PlannedTest["nodes"]): PlannedTest => ({ file: "f", name: "t", nodes, globalTimeout: 1, enableDebugHook: false });
const settle = () => new Promise((r) => setImmediate(r));
const vm = (cores: number): Resources => ({ memoryMiB: 256 * cores, cores });
const local: Resources = { memoryMiB: 0, cores: 0 };

/** Ask for `need` under `name`; `started` lists names in the order they were granted. */
function asker(b: ResourceBudget) {
  const started: string[] = [];
  const leases = new Map<string, Lease>();
  const ask = (name: string, need: Resources, signal?: AbortSignal) =>
    b.acquire(need, signal).then((l) => {
      if (!l) return started.push(`${name} left`);
      leases.set(name, l);
      started.push(name);
    });
  const end = async (name: string) => {
    leases.get(name)!.release();
    await settle();
  };
  return { started, ask, end, leases };
}

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

test("vCPUs are admitted against --cores × --cpu-overcommit: 2 cores × 2 run 4 one-vCPU guests at once, not 5", async () => {
  const b = new ResourceBudget({ jobs: 8, memoryMiB: 8192, cores: 2, cpuOvercommit: 2 });
  const { started, ask, end } = asker(b);
  for (const n of ["a", "b", "c", "d", "e"]) void ask(n, vm(1));
  await settle();
  assert.deepEqual(started, ["a", "b", "c", "d"]);
  assert.equal(b.vcpus, 4);
  await end("a");
  assert.deepEqual(started, ["a", "b", "c", "d", "e"]);
  const onePointFive = new ResourceBudget({ jobs: 8, memoryMiB: 8192, cores: 2, cpuOvercommit: 1.5 });
  assert.equal(onePointFive.vcpus, 3);
});

test("no run is ever refused for vCPUs; memory stays a hard limit, refused at once with the numbers and the flag", () => {
  const b = new ResourceBudget({ jobs: 2, memoryMiB: 2048, cores: 2, cpuOvercommit: 1 });
  assert.equal(b.overrun({ memoryMiB: 1024, cores: 16 }), undefined, "16 vCPUs on 2 cores: admitted (it runs alone)");
  assert.equal(b.runsAlone({ memoryMiB: 1024, cores: 16 }), true);
  assert.equal(b.runsAlone({ memoryMiB: 1024, cores: 2 }), false);
  const over = b.overrun({ memoryMiB: 4096, cores: 4 });
  assert.deepEqual(over, { memoryMiB: { need: 4096, budget: 2048 } });
  assert.equal(overrunText(over!), "its qemu machines need 4096 MiB of memory (budget 2048 MiB, --memory): it can never fit on this host");
  assert.rejects(b.acquire({ memoryMiB: 4096, cores: 1 }), /can never fit/);
});

test("a smaller run starts while a bigger one waits for room (backfilling)", async () => {
  const b = new ResourceBudget({ jobs: 8, memoryMiB: 8192, cores: 2, cpuOvercommit: 2 });
  const { started, ask, end } = asker(b);
  void ask("three", vm(3));
  void ask("two", vm(2));
  void ask("one", vm(1));
  void ask("local", local);
  await settle();
  assert.deepEqual(started, ["three", "one", "local"], "3 + 2 > 4 vCPUs: 'two' waits, 'one' and the local run go ahead");
  await end("one");
  assert.deepEqual(started, ["three", "one", "local"], "3 + 2 still > 4");
  await end("three");
  assert.deepEqual(started, ["three", "one", "local", "two"]);
});

test("no starvation: after passLimit later runs started ahead of a waiter, it reserves what frees up", async () => {
  const b = new ResourceBudget({ jobs: 8, memoryMiB: 8192, cores: 2, cpuOvercommit: 2, passLimit: 2 });
  const { started, ask, end } = asker(b);
  for (const n of ["s1", "s2", "s3"]) void ask(n, vm(1));
  void ask("big", vm(3)); // 3 + 3 > 4: waits
  void ask("s4", vm(1)); // passes big (1st)
  await settle();
  assert.deepEqual(started, ["s1", "s2", "s3", "s4"]);
  void ask("s5", vm(1));
  void ask("s6", vm(1));
  await end("s1");
  assert.deepEqual(started.slice(4), ["s5"], "s5 takes the freed vCPU: big is passed a 2nd time");
  await end("s2");
  assert.deepEqual(started.slice(4), ["s5"], "big was passed passLimit times: the freed vCPU is kept for it, s6 waits");
  await end("s3");
  assert.deepEqual(started.slice(4), ["s5"], "2 of 4 vCPUs free, big needs 3: still nobody passes");
  void ask("loc", local);
  await settle();
  assert.deepEqual(started.slice(4), ["s5", "loc"], "a local run takes nothing big waits for: it still starts");
  await end("s4");
  assert.deepEqual(started.slice(4), ["s5", "loc", "big"], "big starts before s6, which came long after it");
  await end("big");
  assert.deepEqual(started.slice(4), ["s5", "loc", "big", "s6"]);
});

test("without a pass limit reached, waiters that fit are never held back by an older one", async () => {
  const b = new ResourceBudget({ jobs: 8, memoryMiB: 8192, cores: 2, cpuOvercommit: 2, passLimit: 100 });
  const { started, ask, end } = asker(b);
  for (const n of ["s1", "s2", "s3"]) void ask(n, vm(1));
  void ask("big", vm(3));
  for (const n of ["s4", "s5", "s6"]) void ask(n, vm(1));
  await settle();
  for (const n of ["s1", "s2", "s3"]) await end(n);
  assert.deepEqual(started, ["s1", "s2", "s3", "s4", "s5", "s6"], "each freed vCPU went to a later run: a limit is what stops this");
});

test("a run needing more than the whole vCPU budget runs alone: it waits for every qemu run to end, and none starts beside it", async () => {
  const b = new ResourceBudget({ jobs: 8, memoryMiB: 8192, cores: 2, cpuOvercommit: 2, passLimit: 1 });
  const { started, ask, end } = asker(b);
  void ask("one", vm(1));
  void ask("huge", vm(5));
  void ask("two", vm(2)); // passes huge (its 1st pass = the limit)
  await settle();
  assert.deepEqual(started, ["one", "two"]);
  void ask("late", vm(1));
  await end("one");
  assert.deepEqual(started, ["one", "two"], "huge reserves: 'late' may not take the vCPU that freed");
  await end("two");
  assert.deepEqual(started, ["one", "two", "huge"], "no qemu run left: huge starts");
  assert.equal(b.inUse.cores, 5);
  void ask("loc", local);
  await settle();
  assert.deepEqual(started, ["one", "two", "huge", "loc"], "a local run may run beside it, a qemu one may not");
  await end("huge");
  assert.deepEqual(started, ["one", "two", "huge", "loc", "late"]);
});

test("the run-alone notice names the test, its vCPUs and both flags", () => {
  assert.equal(
    noticeText({ kind: "runs-alone", test: "nat", vcpus: 5, budget: { vcpus: 4, cores: 2, cpuOvercommit: 2 } }),
    "nat needs 5 vCPUs, more than the budget of 4 (--cores 2 × --cpu-overcommit 2): it runs alone, with no other qemu test beside it",
  );
});

test("run slots (--jobs): every run takes one; a halted run gives its slot back but keeps its memory and vCPUs", async () => {
  const b = new ResourceBudget({ jobs: 2, memoryMiB: 1024, cores: 2, cpuOvercommit: 1 });
  const { started, ask, leases } = asker(b);
  void ask("q", vm(2));
  void ask("l1", local);
  void ask("l2", local);
  void ask("q2", vm(1));
  await settle();
  assert.deepEqual(started, ["q", "l1"]);
  leases.get("q")!.releaseSlot(); // halted at a breakpoint
  await settle();
  assert.deepEqual(started, ["q", "l1", "l2"], "its slot went to a local run, not to a qemu one (its vCPUs are still held)");
  assert.deepEqual(b.inUse, { slots: 2, memoryMiB: 512, cores: 2 });
  leases.get("q")!.release();
  leases.get("l1")!.release();
  await settle();
  assert.deepEqual(started, ["q", "l1", "l2", "q2"]);
  leases.get("q")!.release(); // twice: no effect
  assert.deepEqual(b.inUse, { slots: 2, memoryMiB: 256, cores: 1 });
});

test("a waiter whose admission stops leaves the line, and those behind it may start", async () => {
  const b = new ResourceBudget({ jobs: 8, memoryMiB: 8192, cores: 2, cpuOvercommit: 1, passLimit: 0 });
  const { started, ask, end } = asker(b);
  const stop = new AbortController();
  void ask("one", vm(1));
  void ask("big", vm(2), stop.signal); // reserves at once (passLimit 0)
  void ask("small", vm(1));
  await settle();
  assert.deepEqual(started, ["one"], "big reserves the free vCPU");
  stop.abort();
  await settle();
  assert.deepEqual(started.sort(), ["big left", "one", "small"]);
  assert.equal(b.waiting, 0);
  await end("one");
});
