// haltpoint.config.{json,mjs,ts}: defaults, profiles, per-test overrides, the precedence
// CLI > environment > profile > file defaults > the test file's own, and bad keys.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { haltpoint, ROOT } from "./helpers/cli.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const tmp = () => tempDir("hp-config-");
const SHARD = join(ROOT, "test/fixtures/shard");

function project(config: unknown, name = "haltpoint.config.json"): string {
  const dir = tmp();
  writeFileSync(join(dir, name), typeof config === "string" ? config : JSON.stringify(config, null, 2));
  return dir;
}

/** name → [retries, timeout] as `haltpoint list --json` reports them, run in `cwd`. */
async function settings(cwd: string, args: string[] = [], env: Record<string, string> = {}) {
  const r = await haltpoint(["list", "--json", ...args], { cwd, env });
  assert.equal(r.exitCode, 0, r.all);
  return Object.fromEntries(JSON.parse(r.stdout).tests.map((t: { name: string; retries: number; timeout: number }) => [t.name, [t.retries, t.timeout]]));
}

test("precedence: CLI > environment > per-test override > profile > file defaults > the test file's own", async () => {
  const dir = project({
    paths: [SHARD],
    timeout: "100s",
    retries: 0,
    overrides: [{ filter: "^alpha$", retries: 3 }],
    profiles: {
      ci: { timeout: "200s", overrides: [{ filter: "^bravo$", timeout: 50 }] },
      local: { retries: 1 },
    },
  });
  // The test files' own: golf and charlie declare retries: 1; every globalTimeout is the default 3600.
  const own = await settings(tmp(), [SHARD]);
  assert.deepEqual([own.golf, own.alpha], [[1, 3600], [0, 3600]]);
  // File defaults beat the test file; a matching override beats the defaults; `paths` comes from the file.
  const file = await settings(dir);
  assert.deepEqual([file.golf, file.alpha, file.bravo], [[0, 100], [3, 100], [0, 100]]);
  // A profile beats the file's defaults, and adds its overrides.
  for (const how of [{ args: ["--profile", "ci"], env: {} as Record<string, string> }, { args: [], env: { HALTPOINT_PROFILE: "ci" } }]) {
    const ci = await settings(dir, how.args, how.env);
    assert.deepEqual([ci.golf, ci.alpha, ci.bravo], [[0, 200], [3, 200], [0, 50]], JSON.stringify(how));
  }
  assert.deepEqual((await settings(dir, ["--profile", "local"])).golf, [1, 100]);
  // The environment beats the profile and the overrides; the command line beats the environment.
  const env = await settings(dir, ["--profile", "ci"], { HALTPOINT_TIMEOUT: "300s", HALTPOINT_RETRIES: "2" });
  assert.deepEqual([env.golf, env.alpha, env.bravo], [[2, 300], [2, 300], [2, 300]]);
  const cli = await settings(dir, ["--profile", "ci", "--timeout", "400s", "--retries", "4"], { HALTPOINT_TIMEOUT: "300s", HALTPOINT_RETRIES: "2" });
  assert.deepEqual([cli.golf, cli.alpha, cli.bravo], [[4, 400], [4, 400], [4, 400]]);
  // The command line's paths replace the file's.
  assert.deepEqual(Object.keys(await settings(dir, [join(SHARD, "hotel.vmtest.ts")])), ["hotel"]);
});

test("a config file sets any run option: defaults, a profile, HALTPOINT_* and the command line, in that order", async () => {
  const dir = project({ jobs: 1, filter: "^delta$", quiet: true, profiles: { ci: { jobs: 2, logDir: "ci-logs" } } });
  const jobs = async (args: string[], env: Record<string, string> = {}) => {
    const r = await haltpoint(["run", SHARD, ...args], { cwd: dir, env });
    assert.equal(r.exitCode, 0, r.all);
    assert.match(r.all, /haltpoint: 1 test, 1 run, /, "filter from the file");
    assert.doesNotMatch(r.all, /delta#1: delta ran/, "quiet from the file");
    return /(\d+) jobs?, logs in (\S+)/.exec(r.all)!.slice(1);
  };
  assert.equal((await jobs([]))[0], "1");
  assert.deepEqual(await jobs(["--profile", "ci"]), ["2", join(dir, "ci-logs")], "a profile's paths are relative to the config file");
  assert.equal((await jobs(["--profile", "ci"], { HALTPOINT_JOBS: "3" }))[0], "3");
  assert.equal((await jobs(["--profile", "ci", "--jobs", "4"], { HALTPOINT_JOBS: "3" }))[0], "4");
});

test(".mjs and .ts config files load, from the working directory or --config", async () => {
  const mjs = project(`export default { filter: "^(alpha|bravo)$", overrides: [{ filter: "bravo", retries: 5 }] };\n`, "haltpoint.config.mjs");
  const m = await settings(mjs, [SHARD]);
  assert.deepEqual(m, { alpha: [0, 3600], bravo: [5, 3600] });
  const ts = project(`const timeout: string = "42s";\nexport default { timeout, filter: "^hotel$" };\n`, "haltpoint.config.ts");
  assert.deepEqual(await settings(ts, [SHARD]), { hotel: [0, 42] });
  assert.deepEqual(await settings(ROOT, [SHARD, "--config", join(ts, "haltpoint.config.ts")]), { hotel: [0, 42] });
});

test("bad config files: exit 2 and one line naming the file and the key", async () => {
  const cases: [unknown, RegExp, string[]?][] = [
    [{ maxFails: 2 }, /haltpoint\.config\.json: top level: unknown key 'maxFails' \(did you mean 'maxFail'\?\)$/],
    [{ "max-fail": 2 }, /top level: unknown key 'max-fail' \(did you mean 'maxFail'\?\)$/],
    [{ colour: true }, /top level: unknown key 'colour'$/],
    [{ profiles: { ci: { jobz: 2 } } }, /haltpoint\.config\.json: profiles\.ci: unknown key 'jobz' \(did you mean 'jobs'\?\)$/],
    [{ overrides: [{ filter: "x", retry: 1 }] }, /haltpoint\.config\.json: overrides\[0\]: unknown key 'retry' \(an override sets retries, timeout, slowTimeout\) \(did you mean 'retries'\?\)$/],
    [{ overrides: [{ retries: 1 }] }, /overrides\[0\]: an override needs a filter/],
    [{ jobs: 0 }, /haltpoint\.config\.json: jobs: --jobs takes a positive integer, got '0'$/],
    [{ backend: "docker" }, /haltpoint\.config\.json: backend: .*Allowed choices are local, qemu/],
    [{ quiet: "yes" }, /quiet: --quiet is a flag: true or false, got "yes"$/],
    [{ profile: "ci" }, /'profile' cannot be set in a config file \(use --profile or HALTPOINT_PROFILE\)$/],
    [{ profiles: { ci: {} } }, /haltpoint\.config\.json: no profile 'nightly' \(it has ci\)$/, ["--profile", "nightly"]],
    ["{ \"jobs\": 2,, }", /haltpoint\.config\.json: cannot load: .*JSON/],
    [[1, 2], /a config file holds an object of option defaults, got a list$/],
  ];
  for (const [config, msg, args] of cases) {
    const dir = project(config);
    for (const cmd of ["run", "list"]) {
      const r = await haltpoint([cmd, SHARD, ...(args ?? [])], { cwd: dir });
      assert.equal(r.exitCode, 2, `${JSON.stringify(config)}: ${r.all}`);
      const lines = r.all.trim().split("\n");
      assert.equal(lines.length, 1, r.all);
      assert.match(lines[0]!, /^haltpoint: /);
      assert.match(lines[0]!, msg);
      assert.ok(lines[0]!.includes(join(dir, "haltpoint.config.json")) || !/config\.json/.test(String(msg)), "names the file by its path");
    }
  }
  const none = await haltpoint(["run", SHARD, "--profile", "ci"], { cwd: tmp() });
  assert.equal(none.exitCode, 2);
  assert.match(none.all, /^haltpoint: --profile ci: no config file \(haltpoint\.config\.json, haltpoint\.config\.mjs, haltpoint\.config\.ts in \S+, or --config FILE\)$/m);
  const two = project({ jobs: 1 });
  writeFileSync(join(two, "haltpoint.config.mjs"), "export default {};\n");
  const both = await haltpoint(["list", SHARD], { cwd: two });
  assert.equal(both.exitCode, 2);
  assert.match(both.all, /haltpoint\.config\.json and .*haltpoint\.config\.mjs both exist: keep one/);
  const missing = await haltpoint(["list", SHARD, "--config", "nope.json"], { cwd: two });
  assert.match(missing.all, /^haltpoint: --config nope\.json: no such file$/m);
  const env = await haltpoint(["list", SHARD], { cwd: tmp(), env: { HALTPOINT_JOBS: "many" } });
  assert.equal(env.exitCode, 0, "list has no --jobs: HALTPOINT_JOBS is not its business");
  const badEnv = await haltpoint(["run", SHARD], { cwd: tmp(), env: { HALTPOINT_JOBS: "many" } });
  assert.equal(badEnv.exitCode, 2);
  assert.match(badEnv.all, /^haltpoint: HALTPOINT_JOBS=many: --jobs takes a positive integer, got 'many'$/m);
});
