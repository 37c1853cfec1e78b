// The pure parts of CI sharding: duration-balanced assignment and reading the CI's shard
// variables. (The CLI tests in ci-selection.test.ts run them through `haltpoint`.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { assignByDuration, durationsFromReports, median } from "../../orchestrator/selection/shard-by-duration.ts";
import { shardFromEnv, parseAutoShard } from "../../orchestrator/selection/ci-shard-env.ts";
import { shardOf } from "../../orchestrator/selection/shard.ts";
import { longTailedSuite } from "../helpers/long-tailed-suite.ts";

const spread = (loads: number[]) => Math.max(...loads) / Math.min(...loads);

test("by durations, 200 long-tailed tests: every test in exactly one shard, shards within 1.5x where hash shards are not", () => {
  const durations = longTailedSuite(200);
  const names = [...durations.keys()];
  for (const total of [2, 4, 8]) {
    const a = assignByDuration(names, durations, total);
    assert.equal(a.shardOf.size, names.length);
    const perShard = Array.from({ length: total }, (_, k) => names.filter((n) => a.shardOf.get(n) === k + 1));
    assert.deepEqual(perShard.flat().sort(), [...names].sort(), `N=${total}: the shards together are the suite, each test once`);
    const loads = perShard.map((ns) => ns.reduce((s, n) => s + durations.get(n)!, 0));
    assert.deepEqual(loads, a.loads, "the loads it reports are the sums of its shards");
    assert.ok(spread(loads) <= 1.5, `N=${total}: duration shards ${loads.join(", ")} within 1.5x`);
    const hash = Array.from({ length: total }, (_, k) => names.filter((n) => shardOf(n, total) === k + 1).reduce((s, n) => s + durations.get(n)!, 0));
    // At N = 2 the 100 tests per shard average the tail out (1.10x on this suite); at 4 and 8 they do not.
    if (total > 2) assert.ok(spread(hash) > 1.5, `N=${total}: hash shards ${hash.join(", ")} are more than 1.5x apart on this suite`);
    assert.ok(Math.max(...loads) < Math.max(...hash), `N=${total}: the longest duration shard is shorter than the longest hash shard`);
  }
});

test("by durations: deterministic whatever the input order; unknown tests count as the median; greedy longest first", () => {
  const durations = new Map([["a", 10], ["b", 7], ["c", 5], ["d", 4], ["e", 3], ["f", 1]]);
  const names = ["a", "b", "c", "d", "e", "f", "new1", "new2"];
  const a = assignByDuration(names, durations, 3);
  const shuffled = assignByDuration([...names].reverse(), durations, 3);
  assert.deepEqual([...shuffled.shardOf].sort(), [...a.shardOf].sort());
  assert.equal(a.fallbackMs, 4.5, "the median of 10, 7, 5, 4, 3, 1");
  assert.deepEqual(a.unknown, ["new1", "new2"]);
  // LPT by hand: a→1 (10), b→2 (7), c→3 (5), new1 4.5→3 (9.5), new2 4.5→2 (11.5), d 4→3 (13.5), e 3→1 (13), f 1→2 (12.5).
  assert.deepEqual(Object.fromEntries(a.shardOf), { a: 1, b: 2, c: 3, new1: 3, new2: 2, d: 3, e: 1, f: 2 });
  assert.deepEqual(a.loads, [13, 12.5, 13.5]);
  // More shards than tests: some are empty, none gets a test twice.
  const wide = assignByDuration(["x", "y"], new Map(), 4);
  assert.deepEqual([...wide.shardOf.values()].sort(), [1, 2]);
  assert.equal(median([]), 1, "no known duration: every test weighs the same");
  assert.throws(() => assignByDuration(["x"], durations, 0), /positive integer/);
});

test("durations from reports: the mean run time of each test over every report", () => {
  const d = durationsFromReports([
    { tests: [{ name: "a", runs: [{ durationMs: 100 }, { durationMs: 300 }] }, { name: "b", runs: [] }] },
    { tests: [{ name: "a", runs: [{ durationMs: 200 }] }, { name: "c", runs: [{ durationMs: 50 }] }] },
  ]);
  assert.deepEqual(Object.fromEntries(d), { a: 200, c: 50 });
});

test("--shard auto: each CI's variables give the same 1-based K/N, and say where they came from", () => {
  assert.deepEqual(shardFromEnv({ CI_NODE_INDEX: "2", CI_NODE_TOTAL: "3" }).shard, { index: 2, total: 3 });
  assert.match(shardFromEnv({ CI_NODE_INDEX: "2", CI_NODE_TOTAL: "3" }).source, /^GitLab \(CI_NODE_INDEX=2 CI_NODE_TOTAL=3\)$/);
  assert.deepEqual(shardFromEnv({ CIRCLE_NODE_INDEX: "1", CIRCLE_NODE_TOTAL: "3" }).shard, { index: 2, total: 3 });
  assert.deepEqual(shardFromEnv({ BUILDKITE_PARALLEL_JOB: "1", BUILDKITE_PARALLEL_JOB_COUNT: "3" }).shard, { index: 2, total: 3 });
  assert.deepEqual(shardFromEnv({ JOB_COMPLETION_INDEX: "1" }, 3).shard, { index: 2, total: 3 });
  assert.match(shardFromEnv({ JOB_COMPLETION_INDEX: "1" }, 3).source, /Kubernetes Indexed Job \(JOB_COMPLETION_INDEX=1, total from --shard auto\/3\)/);
  const oneLine = (re: RegExp) => (e: Error) => re.test(e.message) && !e.message.includes("\n");
  assert.throws(() => shardFromEnv({}), oneLine(/no CI shard variables are set \(CI_NODE_INDEX\/CI_NODE_TOTAL, .*JOB_COMPLETION_INDEX.*\); give --shard K\/N/));
  assert.throws(() => shardFromEnv({ JOB_COMPLETION_INDEX: "0" }), oneLine(/use --shard auto\/N/));
  assert.throws(() => shardFromEnv({ CI_NODE_INDEX: "0", CI_NODE_TOTAL: "3" }), oneLine(/not a machine of 3 \(GitLab numbers them from 1\)/));
  assert.throws(() => shardFromEnv({ CIRCLE_NODE_INDEX: "3", CIRCLE_NODE_TOTAL: "3" }), oneLine(/not a machine of 3/));
  assert.throws(() => shardFromEnv({ CI_NODE_INDEX: "x", CI_NODE_TOTAL: "3" }), oneLine(/CI_NODE_INDEX is 'x'/));
  assert.throws(() => shardFromEnv({ CI_NODE_INDEX: "1", CI_NODE_TOTAL: "3" }, 4), oneLine(/--shard auto\/4: GitLab says 3 machines/));
  assert.deepEqual(parseAutoShard("auto"), {});
  assert.deepEqual(parseAutoShard("auto/4"), { total: 4 });
  assert.equal(parseAutoShard("2/4"), undefined);
  assert.throws(() => parseAutoShard("auto/0"), /positive total/);
});
