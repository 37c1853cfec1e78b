// Which runs have their worker start the next run's machines while they run (take-ahead.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { takeAheadPolicy } from "../../orchestrator/scheduling/take-ahead.ts";
import { expandRuns, type PlannedTest } from "../../orchestrator/selection/plan.ts";
import type { CollectedNode } from "../../common/events.ts";

const guest = (name: string, memory = 256): CollectedNode => ({ name, backend: "qemu", memory, cores: 1 });
const testOf = (name: string, nodes: CollectedNode[]): PlannedTest => ({ file: `/t/${name}.vmtest.ts`, name, nodes, globalTimeout: 60, enableDebugHook: false });
const facts = (tests: PlannedTest[], repeat: number, o: { jobs?: number; memoryMiB?: number; stress?: boolean } = {}) => ({
  tests,
  runs: o.stress ? [] : expandRuns(tests, repeat),
  stress: o.stress ?? false,
  jobs: o.jobs ?? 2,
  memoryMiB: o.memoryMiB ?? 16_384,
});

test("a hunt of one all-guest test: every run but the last --jobs runs makes its worker's next", () => {
  const t = testOf("hunt", [guest("a"), guest("b")]);
  const f = facts([t], 6);
  const wanted = takeAheadPolicy(f);
  assert.ok(wanted);
  assert.deepEqual(f.runs.map((r) => wanted(r)), [true, true, true, true, false, false]);
  const one = facts([t], 3, { jobs: 1 });
  assert.deepEqual(one.runs.map((r) => takeAheadPolicy(one)!(r)), [true, true, false]);
});

test("--stress-duration: no run is known to be the last", () => {
  const wanted = takeAheadPolicy(facts([testOf("hunt", [guest("a")])], 0, { stress: true }));
  assert.ok(wanted);
  assert.equal(wanted({ key: "hunt#999", test: testOf("hunt", [guest("a")]), index: 999 }), true);
});

test("none for a single run, a suite of several tests, a local machine, no machine, or too little memory for two sets per job", () => {
  assert.equal(takeAheadPolicy(facts([testOf("once", [guest("a")])], 1))!(expandRuns([testOf("once", [guest("a")])], 1)[0]!), false, "one run: nothing after it");
  assert.equal(takeAheadPolicy(facts([testOf("a", [guest("a")]), testOf("b", [guest("b")])], 5)), undefined, "two tests take turns: the next run is another test's");
  assert.equal(takeAheadPolicy(facts([testOf("mixed", [guest("a"), { name: "l", backend: "local", memory: 0, cores: 0 }])], 5)), undefined);
  assert.equal(takeAheadPolicy(facts([testOf("none", [])], 5)), undefined);
  // 2 jobs × 2 sets × 1024 MiB = 4096 MiB: more than --memory 4000.
  assert.equal(takeAheadPolicy(facts([testOf("big", [guest("a", 1024)])], 5, { memoryMiB: 4000 })), undefined);
  assert.ok(takeAheadPolicy(facts([testOf("big", [guest("a", 1024)])], 5, { memoryMiB: 4096 })));
});
