// CI for large suites, through the real CLI: nothing silently green (exit 4), `haltpoint
// list`, shards by measured durations, `--shard auto` from the CI's variables, and
// `--rerun-failed` with a merge that counts both attempts of a rerun run once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { haltpoint } from "./helpers/cli.ts";
import { shardOf } from "../orchestrator/selection/shard.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const tmp = () => tempDir("hp-ci-");
const readJson = (f: string) => JSON.parse(readFileSync(f, "utf8"));
const SHARD_FIXTURES = "test/fixtures/shard";
const SHARD_NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];
/** No CI shard variables from whatever CI runs these tests: each test sets the ones it wants. */
const NO_CI = { CI_NODE_INDEX: "", CI_NODE_TOTAL: "", CIRCLE_NODE_INDEX: "", CIRCLE_NODE_TOTAL: "", BUILDKITE_PARALLEL_JOB: "", BUILDKITE_PARALLEL_JOB_COUNT: "", JOB_COMPLETION_INDEX: "" };

async function listJson(args: string[], env: Record<string, string> = {}) {
  const r = await haltpoint(["list", ...args, "--json"], { env: { ...NO_CI, ...env } });
  return { r, list: r.exitCode === 0 ? JSON.parse(r.stdout) : undefined };
}

test("a run that selects no test exits 4 with a line saying why; --pass-with-no-tests makes it pass", async () => {
  const dir = tmp();
  mkdirSync(join(dir, "empty"));
  const cases: [string[], RegExp][] = [
    [[SHARD_FIXTURES, "--filter", "no-such-test"], /haltpoint: no test selected: --filter \/no-such-test\/ matches none of the 8 tests \(exit status 4; --pass-with-no-tests allows it\)/],
    [[join(dir, "empty")], new RegExp(`haltpoint: no test selected: no test file in ${join(dir, "empty")} `)],
    [["test/fixtures/shard/charlie.vmtest.ts", "--shard", `${(shardOf("charlie", 2) % 2) + 1}/2`], /haltpoint: no test selected: shard \d\/2 has none of the 1 test \(shards by test-name hash\)/],
  ];
  for (const [i, [args, why]] of cases.entries()) {
    const r = await haltpoint(["run", ...args, "-q", "--log-dir", join(dir, "logs"), "--json", join(dir, `r${i}.json`)], { env: NO_CI });
    assert.equal(r.exitCode, 4, r.all);
    assert.match(r.all, why);
    assert.equal(readJson(join(dir, `r${i}.json`)).exitStatus, 4, "the report says 4 too");
    const ok = await haltpoint(["run", ...args, "-q", "--log-dir", join(dir, "logs"), "--pass-with-no-tests", "--json", join(dir, `ok${i}.json`)], { env: NO_CI });
    assert.equal(ok.exitCode, 0, ok.all);
    assert.match(ok.all, /no test selected: .* \(--pass-with-no-tests\)/);
    const l = await haltpoint(["list", ...args], { env: NO_CI });
    assert.equal(l.exitCode, 4, l.all);
    assert.match(l.all, why);
  }
  // merge of an empty report: 4 as well, unless the report or the merge allows it.
  assert.equal((await haltpoint(["merge", join(dir, "r0.json")])).exitCode, 4);
  assert.equal((await haltpoint(["merge", join(dir, "r0.json"), "--pass-with-no-tests"])).exitCode, 0);
  assert.equal((await haltpoint(["merge", join(dir, "ok0.json")])).exitCode, 0, "the report remembers --pass-with-no-tests");
});

test("list --json lists every test a run runs, with its nodes, retries and timeout, without running any", async () => {
  const dir = tmp();
  const { r, list } = await listJson(["examples", "--timeout", "90s"]);
  assert.equal(r.exitCode, 0, r.all);
  assert.equal(list.format, "haltpoint-list");
  const copyScratch = () => readdirSync(tmpdir()).filter((f) => f.startsWith("copy-example-"));
  const scratchBefore = copyScratch();
  const run = await haltpoint(["run", "examples", "-q", "--filter", "basics|copy-files", "--log-dir", join(dir, "l"), "--json", join(dir, "run.json")]);
  assert.equal(run.exitCode, 0, run.all);
  assert.deepEqual(copyScratch(), scratchBefore, "examples/copy-files.vmtest.ts removes its host scratch directory (users copy the examples)");
  const { list: filtered } = await listJson(["examples", "--filter", "basics|copy-files"]);
  assert.deepEqual(filtered.tests.map((t: { name: string; file: string }) => [t.name, t.file]), readJson(join(dir, "run.json")).tests.map((t: { name: string; file: string }) => [t.name, t.file]));
  const names = list.tests.map((t: { name: string }) => t.name);
  assert.deepEqual(names, ["basics", "client-server", "copy-files", "debian-services", "freeze-thaw", "nixos-login", "nixos-nat", "nixos-nginx", "nixos-openssh", "nixos-redis", "nixos-simple", "qemu-network", "subtests-and-waits"]);
  const qn = list.tests.find((t: { name: string }) => t.name === "qemu-network");
  assert.deepEqual(qn.nodes, [
    { name: "server", backend: "qemu", memory: 256, cores: 1 },
    { name: "client", backend: "qemu", memory: 256, cores: 1 },
  ]);
  for (const t of list.tests) assert.equal(t.timeout, 90, "--timeout replaces every globalTimeout");
  const { list: own } = await listJson(["examples/qemu-network.vmtest.ts"]);
  assert.equal(own.tests[0].timeout, 300, "without --timeout: the test's globalTimeout");
  const text = await haltpoint(["list", SHARD_FIXTURES]);
  assert.equal(text.exitCode, 0);
  assert.match(text.stdout, /^charlie {2}\S+charlie\.vmtest\.ts {2}no machines; retries 1; timeout 3600 s$/m);
  assert.match(text.stdout, /^foxtrot {2}\S+ {2}a \(local\), b \(local\); timeout 3600 s$/m);
  assert.match(text.stderr, /haltpoint: 8 tests/);
});

test("--shard auto gives the same shard as the explicit K/N, from GitLab, CircleCI, Buildkite or a Kubernetes Indexed Job, and says which", async () => {
  const explicit = (await listJson([SHARD_FIXTURES, "--shard", "2/3"])).list.tests.map((t: { name: string }) => t.name);
  assert.ok(explicit.length > 0);
  const cis: [Record<string, string>, string, RegExp][] = [
    [{ CI_NODE_INDEX: "2", CI_NODE_TOTAL: "3" }, "auto", /--shard auto: shard 2\/3 from GitLab \(CI_NODE_INDEX=2 CI_NODE_TOTAL=3\)/],
    [{ CIRCLE_NODE_INDEX: "1", CIRCLE_NODE_TOTAL: "3" }, "auto", /from CircleCI \(CIRCLE_NODE_INDEX=1 CIRCLE_NODE_TOTAL=3\)/],
    [{ BUILDKITE_PARALLEL_JOB: "1", BUILDKITE_PARALLEL_JOB_COUNT: "3" }, "auto", /from Buildkite/],
    [{ JOB_COMPLETION_INDEX: "1" }, "auto/3", /from a Kubernetes Indexed Job \(JOB_COMPLETION_INDEX=1, total from --shard auto\/3\)/],
  ];
  for (const [env, spec, says] of cis) {
    const { r, list } = await listJson([SHARD_FIXTURES, "--shard", spec], env);
    assert.equal(r.exitCode, 0, r.all);
    assert.match(r.stderr, says);
    assert.deepEqual(list.tests.map((t: { name: string }) => t.name), explicit, JSON.stringify(env));
    assert.deepEqual(list.shard, { index: 2, total: 3 });
  }
  // A run says it too, and its report carries the resolved shard (so merge can check the set).
  const dir = tmp();
  const r = await haltpoint(["run", SHARD_FIXTURES, "--shard", "auto", "-q", "--log-dir", join(dir, "l"), "--json", join(dir, "a.json")], { env: { ...NO_CI, CI_NODE_INDEX: "2", CI_NODE_TOTAL: "3" } });
  assert.match(r.all, /haltpoint: --shard auto: shard 2\/3 from GitLab/);
  assert.match(r.all, /tests \(shard 2\/3\)/);
  assert.deepEqual(readJson(join(dir, "a.json")).shard, { index: 2, total: 3 });
  const none = await haltpoint(["list", SHARD_FIXTURES, "--shard", "auto"], { env: NO_CI });
  assert.equal(none.exitCode, 2);
  assert.match(none.stderr, /^haltpoint: --shard auto: no CI shard variables are set \(.*\); give --shard K\/N$/m);
  const k8s = await haltpoint(["list", SHARD_FIXTURES, "--shard", "auto"], { env: { ...NO_CI, JOB_COMPLETION_INDEX: "0" } });
  assert.equal(k8s.exitCode, 2);
  assert.match(k8s.stderr, /gives JOB_COMPLETION_INDEX but not how many machines there are: use --shard auto\/N/);
});

/** A JSON report with these durations (ms), as an earlier run would have written it. */
function durationsReport(file: string, durations: Record<string, number>): void {
  const tests = Object.entries(durations).map(([name, ms]) => ({
    name,
    file: `${SHARD_FIXTURES}/${name}.vmtest.ts`,
    retries: 0,
    notRun: [],
    runs: [{ run: 1, key: `${name}#1`, outcome: "passed", startedAt: new Date(0).toISOString(), durationMs: ms, logDir: "/nonexistent", attempts: [] }],
  }));
  writeFileSync(file, JSON.stringify({ format: "haltpoint-report", version: 2, startedAt: new Date(0).toISOString(), durationMs: 0, tests }));
}

test("--shard K/N --durations: shards by measured time cover the suite exactly once and are within 1.5x where hash shards are not", async () => {
  const dir = tmp();
  // Make hash shard 1 of 2 the slow one: its tests take 10 s each, the others 1 s; hotel is new (no duration).
  const durations = Object.fromEntries(SHARD_NAMES.filter((n) => n !== "hotel").map((n) => [n, shardOf(n, 2) === 1 ? 10_000 : 1_000]));
  const report = join(dir, "last.json");
  durationsReport(report, durations);
  const weight = (n: string) => durations[n] ?? 0;
  for (const total of [2, 3]) {
    const byTime: string[][] = [];
    const byHash: string[][] = [];
    for (let k = 1; k <= total; k++) {
      const timed = await listJson([SHARD_FIXTURES, "--shard", `${k}/${total}`, "--durations", report, "--pass-with-no-tests"]);
      assert.equal(timed.r.exitCode, 0, timed.r.all);
      assert.match(timed.r.stderr, new RegExp(`shard ${k}/${total} by durations from 1 report: 7 of 8 tests measured, 1 new counted as the median`));
      byTime.push(timed.list.tests.map((t: { name: string }) => t.name));
      byHash.push((await listJson([SHARD_FIXTURES, "--shard", `${k}/${total}`, "--pass-with-no-tests"])).list.tests.map((t: { name: string }) => t.name));
    }
    assert.deepEqual(byTime.flat().sort(), SHARD_NAMES, `N=${total}: every test in exactly one shard`);
    const median = [...Object.values(durations)].sort((a, b) => a - b)[3]!;
    const load = (names: string[]) => names.reduce((s, n) => s + (n === "hotel" ? median : weight(n)), 0);
    const timeLoads = byTime.map(load);
    assert.ok(Math.max(...timeLoads) / Math.min(...timeLoads) <= 1.5, `N=${total}: by durations ${timeLoads.join(", ")}`);
    if (total === 2) {
      const hashLoads = byHash.map(load);
      assert.ok(Math.max(...hashLoads) / Math.min(...hashLoads) > 1.5, `N=2: by hash ${hashLoads.join(", ")}`);
    }
  }
  // The same reports on every machine give the same assignment.
  const again = await listJson([SHARD_FIXTURES, "--shard", "1/3", "--durations", report]);
  const first = await listJson([SHARD_FIXTURES, "--shard", "1/3", "--durations", report]);
  assert.deepEqual(again.list.tests, first.list.tests);
  // A real run's own report works as --durations, and a bad one is a one-line error naming it.
  const real = await haltpoint(["run", SHARD_FIXTURES, "-q", "--log-dir", join(dir, "l"), "--json", join(dir, "real.json")]);
  assert.equal(real.exitCode, 1, real.all);
  const fromReal = await listJson([SHARD_FIXTURES, "--shard", "1/2", "--durations", join(dir, "real.json")]);
  assert.match(fromReal.r.stderr, /8 of 8 tests measured/);
  writeFileSync(join(dir, "junk.json"), "[]");
  const junk = await haltpoint(["list", SHARD_FIXTURES, "--shard", "1/2", "--durations", join(dir, "junk.json")]);
  assert.equal(junk.exitCode, 2);
  assert.match(junk.stderr, /junk\.json: not a haltpoint JSON report/);
});

test("--rerun-failed runs exactly the failed and flaky runs; merge shows each run's final outcome with every attempt counted once", async () => {
  const dir = tmp();
  const fixed = join(dir, "fixed-mark");
  const env = { HP_FIXED: fixed };
  const first = await haltpoint(["run", "test/fixtures/rerun", SHARD_FIXTURES, "--repeat", "2", "-q", "--log-dir", join(dir, "l1"), "--json", join(dir, "first.json")], { env });
  assert.equal(first.exitCode, 1, first.all);
  const orig = readJson(join(dir, "first.json"));
  const notPassed = orig.tests.flatMap((t: { runs: { key: string; outcome: string }[] }) => t.runs.filter((r) => r.outcome !== "passed").map((r) => r.key)).sort();
  assert.deepEqual(notPassed, ["bravo#1", "bravo#2", "broken#1", "broken#2", "charlie#1", "charlie#2", "echo#2", "fixed-later#1", "fixed-later#2", "golf#1", "golf#2"]);

  writeFileSync(fixed, "");
  const rerun = await haltpoint(["run", "test/fixtures/rerun", SHARD_FIXTURES, "--rerun-failed", join(dir, "first.json"), "-q", "--log-dir", join(dir, "l2"), "--json", join(dir, "rerun.json")], { env });
  assert.match(rerun.all, /--rerun-failed: 11 failed or flaky runs of 6 tests from /);
  const again = readJson(join(dir, "rerun.json"));
  const rerunKeys = again.tests.flatMap((t: { runs: { key: string }[] }) => t.runs.map((r) => r.key)).sort();
  assert.deepEqual(rerunKeys, notPassed, "exactly the failed and flaky runs, with their run numbers");
  assert.equal(again.rerunOf.startedAt, orig.startedAt);
  const outcome = (rep: any, key: string) => rep.tests.flatMap((t: any) => t.runs).find((r: any) => r.key === key);
  assert.equal(outcome(again, "fixed-later#1").outcome, "passed");

  const merged = await haltpoint(["merge", join(dir, "rerun.json"), join(dir, "first.json"), "--json", join(dir, "merged.json")]);
  const m = readJson(join(dir, "merged.json"));
  const runs = m.tests.flatMap((t: any) => t.runs);
  assert.equal(runs.length, orig.summary.runs, "one entry per run: a rerun run is not counted twice");
  assert.equal(new Set(runs.map((r: any) => r.key)).size, runs.length);
  const fl = outcome(m, "fixed-later#1");
  assert.equal(fl.outcome, "flaky", "failed, then passed on the rerun");
  assert.deepEqual(fl.attempts.map((a: any) => [a.attempt, a.outcome]), [[1, "failed"], [2, "passed"]]);
  // golf has retries: 1, so two attempts in each report: four in all, still failed.
  assert.deepEqual(outcome(m, "golf#1").attempts.map((a: any) => [a.attempt, a.outcome]), [[1, "failed"], [2, "failed"], [3, "failed"], [4, "failed"]]);
  assert.equal(outcome(m, "broken#2").outcome, "failed");
  assert.equal(outcome(m, "alpha#1").attempts.length, 1, "a run that passed the first time is not rerun");
  assert.equal(m.summary.flaky, orig.summary.flaky + 2, "fixed-later#1 and #2 are now flaky");
  assert.equal(merged.exitCode, 1, "bravo, broken, golf still fail");
  assert.match(merged.all, /FLAKY fixed-later#1/);
  // Nothing failed: a rerun has nothing to run, and says so (exit 4 unless --pass-with-no-tests).
  const clean = await haltpoint(["run", "test/fixtures/rerun/steady.vmtest.ts", "-q", "--log-dir", join(dir, "l3"), "--json", join(dir, "clean.json")]);
  assert.equal(clean.exitCode, 0);
  const nothing = await haltpoint(["run", "test/fixtures/rerun/steady.vmtest.ts", "-q", "--log-dir", join(dir, "l4"), "--rerun-failed", join(dir, "clean.json")]);
  assert.equal(nothing.exitCode, 4, nothing.all);
  assert.match(nothing.all, /no test selected: .*clean\.json has no failed or flaky run/);
  const both = await haltpoint(["run", "test/fixtures/rerun", "--rerun-failed", join(dir, "first.json"), "--repeat", "2"]);
  assert.equal(both.exitCode, 2);
  assert.match(both.all, /--rerun-failed runs the failed runs again, each once: it takes no --repeat or --stress-duration/);
});
