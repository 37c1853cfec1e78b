// --shard K/N with --repeat / --stress-duration shares out runs, not tests: a flake hunt of
// one test spreads over every machine, each run keeps its suite-wide number, and
// `haltpoint merge` of the shards equals one run's report, flake statistics included.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { haltpoint } from "./helpers/cli.ts";
import { expandRuns, type PlannedTest } from "../orchestrator/selection/plan.ts";
import { runsInShard, runsInShardByDuration, shardOfRun, stressRunNumber } from "../orchestrator/selection/shard-runs.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const tmp = () => tempDir("hp-shard-runs-");
const readJson = (f: string) => JSON.parse(readFileSync(f, "utf8"));
const testOf = (name: string): PlannedTest => ({ file: `${name}.vmtest.ts`, name, nodes: [], globalTimeout: 60, enableDebugHook: false });

test("runs of --repeat split by hash: each run on one shard, every shard within one run per test of the others", () => {
  const tests = ["a", "b", "login", "x-1"].map(testOf);
  for (const [repeat, total] of [
    [1000, 3],
    [7, 4],
    [2, 5],
    [1, 2],
  ] as const) {
    const all = expandRuns(tests, repeat);
    const shards = Array.from({ length: total }, (_, k) => runsInShard(all, { index: k + 1, total }));
    assert.deepEqual(shards.flat().map((r) => r.key).sort(), all.map((r) => r.key).sort(), `repeat ${repeat} over ${total}: every run once`);
    for (const t of tests) {
      const counts = shards.map((s) => s.filter((r) => r.test.name === t.name).length);
      assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `${t.name}: ${counts}`);
    }
    // A run's shard depends on its test's name, its number and N only.
    for (const r of all) assert.equal(shardOfRun(r.test.name, r.index, total), shards.findIndex((s) => s.includes(r)) + 1);
  }
});

test("runs of --repeat split by durations: LPT over runs, every run once, the long test's runs spread", () => {
  const tests = [testOf("long"), testOf("short")];
  const all = expandRuns(tests, 6);
  const d = new Map([
    ["long", 10_000],
    ["short", 100],
  ]);
  const shards = [1, 2, 3].map((k) => runsInShardByDuration(all, d, { index: k, total: 3 }));
  assert.deepEqual(shards.flatMap((s) => s.runs.map((r) => r.key)).sort(), all.map((r) => r.key).sort());
  for (const s of shards) assert.equal(s.runs.filter((r) => r.test.name === "long").length, 2, "6 runs of the long test: 2 per shard");
  assert.deepEqual(shards[0]!.loads, shards[1]!.loads, "every shard computes the same loads");
});

test("--stress-duration shards number their rounds K, K+N, K+2N: disjoint without talking", () => {
  const seen = new Set<number>();
  for (let k = 1; k <= 3; k++) for (let round = 1; round <= 50; round++) seen.add(stressRunNumber(round, { index: k, total: 3 }));
  assert.equal(seen.size, 150);
  assert.deepEqual([1, 2, 3].map((round) => stressRunNumber(round, { index: 2, total: 3 })), [2, 5, 8]);
  assert.equal(stressRunNumber(4, undefined), 4);
});

test("--shard K/3 --repeat 6 of a flake hunt: every shard runs the test, merge equals one run's statistics", async () => {
  const dir = tmp();
  const common = ["--repeat", "6", "--jobs", "2", "-q"];
  const whole = await haltpoint(["run", "test/fixtures/shard-runs", ...common, "--log-dir", join(dir, "whole"), "--json", join(dir, "whole.json")]);
  assert.equal(whole.exitCode, 1, whole.all);
  const shards = await Promise.all([1, 2, 3].map((k) => haltpoint(["run", "test/fixtures/shard-runs", "--shard", `${k}/3`, ...common, "--log-dir", join(dir, `s${k}`), "--json", join(dir, `s${k}.json`)])));
  for (const [i, s] of shards.entries()) {
    assert.match(s.all, new RegExp(`shard ${i + 1}/3 of 12 runs \\(--repeat 6\\): 4 runs, each with its suite-wide run number`), s.all);
    const report = readJson(join(dir, `s${i + 1}.json`));
    for (const t of report.tests) assert.equal(t.runs.length, 2, `shard ${i + 1} makes 2 of ${t.name}'s 6 runs`);
  }
  const merged = await haltpoint(["merge", ...[1, 2, 3].map((k) => join(dir, `s${k}.json`)), "--json", join(dir, "merged.json")]);
  assert.equal(merged.exitCode, 1, merged.all);
  const stats = (f: string) =>
    Object.fromEntries(
      readJson(f).tests.map((t: any) => [t.name, { ...t.stats, groups: t.stats.groups.map((g: any) => ({ count: g.count, runs: g.occurrences.map((o: any) => o.run) })), runs: t.runs.map((r: any) => `${r.key} ${r.outcome}`) }]),
    );
  assert.deepEqual(stats(join(dir, "merged.json")), stats(join(dir, "whole.json")));
  assert.deepEqual(stats(join(dir, "whole.json"))["every-third"].groups[0].runs, [3, 6]);
  assert.equal(stats(join(dir, "merged.json"))["every-third"].failures, 2);
});
