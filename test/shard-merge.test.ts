// --shard K/N and `haltpoint merge`: the shards partition the suite, and merging their
// reports gives the report of the unsharded run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { haltpoint } from "./helpers/cli.ts";
import { fnv1a32, inShard, parseShard, shardOf } from "../orchestrator/selection/shard.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const tmp = () => tempDir("hp-shard-");
const readJson = (f: string) => JSON.parse(readFileSync(f, "utf8"));

test("parseShard takes K/N with 1 ≤ K ≤ N, with a one-line error otherwise", () => {
  assert.deepEqual(parseShard("2/4"), { index: 2, total: 4 });
  assert.deepEqual(parseShard("1/1"), { index: 1, total: 1 });
  for (const bad of ["0/3", "4/3", "1/0", "a/b", "1", "1/2/3", "-1/2", "1.5/3", ""]) {
    assert.throws(() => parseShard(bad), (e: Error) => /^--shard takes K\/N with 1 ≤ K ≤ N \(e\.g\. 2\/4\), got '.*'$/.test(e.message) && !e.message.includes("\n"), bad);
  }
});

test("shards partition any suite: every test in exactly one shard, stable, roughly even; adding tests moves none", () => {
  // FNV-1a 32-bit reference values (from the FNV specification's test vectors).
  assert.equal(fnv1a32(""), 0x811c9dc5);
  assert.equal(fnv1a32("a"), 0xe40c292c);
  assert.equal(fnv1a32("foobar"), 0xbf9cf968);
  const names = Array.from({ length: 1000 }, (_, i) => ({ name: `test-${i}` }));
  for (const total of [1, 2, 3, 4, 7, 16]) {
    const shards = Array.from({ length: total }, (_, k) => inShard(names, { index: k + 1, total }));
    const all = shards.flat().map((t) => t.name);
    assert.equal(all.length, names.length, `N=${total}: no test in two shards, none left out`);
    assert.deepEqual(new Set(all), new Set(names.map((t) => t.name)));
    // As even as a random assignment: each size within 4 standard deviations of the binomial.
    const mean = names.length / total;
    const sd = Math.sqrt(names.length * (1 / total) * (1 - 1 / total));
    for (const s of shards) assert.ok(Math.abs(s.length - mean) <= 4 * sd, `N=${total}: shard size ${s.length} near ${mean} ± ${4 * sd}`);
  }
  // The shard depends on the name and N alone: a test's shard is the same whatever else is in the suite.
  const before = new Map(names.map((t) => [t.name, shardOf(t.name, 5)]));
  const grown = [...names, ...Array.from({ length: 100 }, (_, i) => ({ name: `new-${i}` }))];
  for (const t of grown.slice(0, names.length)) assert.equal(shardOf(t.name, 5), before.get(t.name));
  assert.equal(shardOf("login", 3), shardOf("login", 3));
});

test("--shard with a bad value: exit 2 and one line naming the flag", async () => {
  for (const v of ["0/3", "3/2", "x"]) {
    const r = await haltpoint(["run", "test/fixtures/shard", "--shard", v]);
    assert.equal(r.exitCode, 2, r.all);
    assert.match(r.all, new RegExp(`--shard takes K/N with 1 ≤ K ≤ N \\(e\\.g\\. 2/4\\), got '${v}'`));
  }
});

/** What must match between a merged report and the unsharded run: tests, runs, outcomes, failures. */
function normalise(report: ReturnType<typeof readJson>) {
  return {
    exitStatus: report.exitStatus,
    interrupted: report.interrupted,
    summary: report.summary,
    loadErrors: report.loadErrors,
    tests: [...report.tests]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((t) => ({
        name: t.name,
        file: t.file,
        retries: t.retries,
        notRun: t.notRun,
        runs: t.runs.map((r: any) => ({
          key: r.key,
          outcome: r.outcome,
          error: r.error,
          reason: r.reason,
          attempts: r.attempts.map((a: any) => ({ attempt: a.attempt, outcome: a.outcome, error: a.error && { name: a.error.name, message: a.error.message }, reason: a.reason, log: a.log })),
        })),
        stats: {
          ...t.stats,
          groups: t.stats.groups.map((g: any) => ({ signature: g.signature, count: g.count, runs: g.occurrences.map((o: any) => [o.run, o.attempt]) })),
        },
      })),
  };
}

test("--shard 1/3, 2/3, 3/3 cover the suite with no overlap, and merging their reports gives the unsharded report", async () => {
  const dir = tmp();
  const common = ["--repeat", "2", "--jobs", "2", "-q"];
  const whole = await haltpoint(["run", "test/fixtures/shard", ...common, "--log-dir", join(dir, "whole"), "--json", join(dir, "whole.json"), "--junit", join(dir, "whole.xml")]);
  assert.equal(whole.exitCode, 1, whole.all);
  const shards = await Promise.all(
    [1, 2, 3].map((k) => haltpoint(["run", "test/fixtures/shard", "--shard", `${k}/3`, ...common, "--log-dir", join(dir, `s${k}`), "--json", join(dir, `s${k}.json`)])),
  );
  for (const [i, s] of shards.entries()) assert.match(s.all, new RegExp(`\\(shard ${i + 1}/3\\)`));

  // With --repeat the shards share out runs (shard-runs.ts): each run on one shard, under its suite-wide number.
  const keysOf = (f: string) => readJson(f).tests.flatMap((t: { runs: { key: string }[] }) => t.runs.map((r) => r.key)) as string[];
  const names = [1, 2, 3].map((k) => readJson(join(dir, `s${k}.json`)).tests.map((t: { name: string }) => t.name) as string[]);
  const keys = [1, 2, 3].map((k) => keysOf(join(dir, `s${k}.json`)));
  for (const n of keys) assert.ok(n.length > 0, "each shard of this suite has runs");
  const union = keys.flat().sort();
  assert.deepEqual(union, [...new Set(union)], "no run in two shards");
  assert.deepEqual(union, keysOf(join(dir, "whole.json")).sort(), "together the shards are the whole suite's runs");
  for (const k of [1, 2, 3]) assert.deepEqual(readJson(join(dir, `s${k}.json`)).shard, { index: k, total: 3 });

  const merged = await haltpoint(["merge", ...[3, 1, 2].map((k) => join(dir, `s${k}.json`)), "--json", join(dir, "merged.json"), "--junit", join(dir, "merged.xml")]);
  assert.equal(merged.exitCode, whole.exitCode, "merge exits as the unsharded run did\n" + merged.all);
  assert.match(merged.all, /haltpoint merge: 3 reports \(shards 1\/3, 2\/3, 3\/3\), 8 tests, 16 runs/);
  assert.match(merged.all, /9 passed, 2 flaky, 5 failed/);
  assert.match(whole.all, /9 passed, 2 flaky, 5 failed/);
  assert.deepEqual(normalise(readJson(join(dir, "merged.json"))), normalise(readJson(join(dir, "whole.json"))));
  assert.equal(readJson(join(dir, "merged.json")).shard, null, "the merged report is the whole suite");
  // The merged JUnit has the same test cases with the same results as the unsharded one.
  const cases = (xml: string) => [...xml.matchAll(/<testcase name="([^"]+)"[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)].map((m) => `${m[1]} ${[...(m[3] ?? "").matchAll(/<(failure|rerunFailure|flakyFailure)\b/g)].map((x) => x[1]).join(",")}`).sort();
  assert.deepEqual(cases(readFileSync(join(dir, "merged.xml"), "utf8")), cases(readFileSync(join(dir, "whole.xml"), "utf8")));

  // A shard missing, or given twice: the merge refuses (a CI must not pass on part of the suite).
  const missing = await haltpoint(["merge", join(dir, "s1.json"), join(dir, "s3.json")]);
  assert.equal(missing.exitCode, 2);
  assert.match(missing.all, /haltpoint: no report for shard 2\/3/);
  const partial = await haltpoint(["merge", join(dir, "s1.json"), join(dir, "s3.json"), "--allow-missing-shards", "--json", join(dir, "partial.json")]);
  assert.equal(readJson(join(dir, "partial.json")).tests.length, new Set([...names[0]!, ...names[2]!]).size);
  assert.ok(partial.exitCode === 0 || partial.exitCode === 1);
  const twice = await haltpoint(["merge", join(dir, "s1.json"), join(dir, "s1.json")]);
  assert.equal(twice.exitCode, 2);
  assert.match(twice.all, /shard 1\/3 is in both/);
  writeFileSync(join(dir, "junk.json"), "{\"hello\": 1}");
  const junk = await haltpoint(["merge", join(dir, "junk.json")]);
  assert.equal(junk.exitCode, 2);
  assert.match(junk.all, /junk\.json: not a haltpoint JSON report/);
});

test("merge: --flaky-fails (or a report made with it) makes flaky runs fail; an empty shard passes with --pass-with-no-tests", async () => {
  const dir = tmp();
  const r = await haltpoint(["run", "test/fixtures/shard/charlie.vmtest.ts", "-q", "--json", join(dir, "c.json")]);
  assert.equal(r.exitCode, 0, r.all);
  assert.equal((await haltpoint(["merge", join(dir, "c.json")])).exitCode, 0);
  assert.equal((await haltpoint(["merge", join(dir, "c.json"), "--flaky-fails"])).exitCode, 1);
  const strict = await haltpoint(["run", "test/fixtures/shard/charlie.vmtest.ts", "-q", "--flaky-fails", "--json", join(dir, "s.json")]);
  assert.equal(strict.exitCode, 1);
  assert.equal((await haltpoint(["merge", join(dir, "s.json")])).exitCode, 1, "the report remembers --flaky-fails");
  // A shard can hold no test at all (a small suite on many machines): that exits 4 unless
  // --pass-with-no-tests says it is expected; then it passes, and its report merges.
  const emptyShard = ["run", "test/fixtures/shard/charlie.vmtest.ts", "--shard", `${(shardOf("charlie", 2) % 2) + 1}/2`, "-q"];
  assert.equal((await haltpoint(emptyShard)).exitCode, 4);
  const empty = await haltpoint([...emptyShard, "--pass-with-no-tests", "--json", join(dir, "e.json")]);
  assert.equal(empty.exitCode, 0, empty.all);
  assert.match(empty.all, /0 tests \(shard \d\/2\), 0 runs/);
  assert.equal(readJson(join(dir, "e.json")).tests.length, 0);
});
