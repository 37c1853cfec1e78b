// --max-fail, --slow-timeout and --timeout, through the real CLI.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { haltpoint, watchOutput } from "../helpers/cli.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

const tmp = () => tempDir("hp-limits-");
const readJson = (f: string) => JSON.parse(readFileSync(f, "utf8"));

test("--max-fail 2: admission stops at the second failed run; the rest are not run", async () => {
  const dir = tmp();
  const r = await haltpoint(["run", "test/fixtures/suite", "--filter", "fail", "--repeat", "6", "--jobs", "1", "--max-fail", "2", "-q", "--log-dir", join(dir, "l"), "--json", join(dir, "r.json")]);
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.all, /haltpoint: --max-fail 2: fail#2 failed \(2 failed runs\); starting no more runs/);
  const rep = readJson(join(dir, "r.json"));
  assert.deepEqual(rep.summary, { runs: 2, passed: 0, flaky: 0, failed: 2, notRun: 4, loadErrors: 0 });
  assert.match(r.all, /0 passed, 2 failed, 4 not run/);
  // Passing runs do not count: with a passing test in between, still exactly two failures.
  const mixed = await haltpoint(["run", "test/fixtures/suite", "--repeat", "4", "--jobs", "1", "--max-fail", "2", "-q", "--log-dir", join(dir, "m"), "--json", join(dir, "m.json")]);
  const m = readJson(join(dir, "m.json"));
  assert.equal(m.summary.failed, 2, mixed.all);
  assert.ok(m.summary.passed >= 1, "the passing runs before the second failure ran");
  // --until-fail is --max-fail 1.
  const uf = await haltpoint(["run", "test/fixtures/suite", "--filter", "fail", "--repeat", "3", "--jobs", "1", "--until-fail", "-q", "--log-dir", join(dir, "u"), "--json", join(dir, "u.json")]);
  assert.match(uf.all, /--until-fail: fail#1 failed; starting no more runs/);
  assert.equal(readJson(join(dir, "u.json")).summary.failed, 1);
  const bad = await haltpoint(["run", "test/fixtures/suite", "--max-fail", "0"]);
  assert.equal(bad.exitCode, 2);
  assert.match(bad.all, /--max-fail takes a positive integer, got '0'/);
});

test("--slow-timeout prints a live SLOW line each time another slow timeout passes, only for the slow run", async () => {
  const dir = tmp();
  const release = join(dir, "release");
  const child = haltpoint(["run", "test/fixtures/slow", "--slow-timeout", "1s", "--log-dir", join(dir, "l")], { env: { HP_SLOW_RELEASE: release }, timeout: 600_000 });
  const out = watchOutput(child, 300_000);
  // The first line says at least the slow timeout, even when its timer fired a hair early.
  const first = await out.waitFor(/SLOW slow#1: still running after [^\n]*\n/);
  assert.match(first[0], /still running after 1\.\d\d s \(slow timeout 1\.00 s\)/);
  // The run is still going while the line is printed (it is live), and it repeats.
  await out.waitFor(/SLOW slow#1: still running after 2\.\d\d s/);
  assert.doesNotMatch(out.text(), /slow#1: PASS/);
  writeFileSync(release, "");
  const r = await child;
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /slow#1: PASS/);
  assert.doesNotMatch(r.all, /SLOW quick#1/, "the quick test is not slow");
  // The SLOW lines come before the result, in order.
  const lines = r.all.split("\n");
  const slow = lines.filter((l) => l.startsWith("SLOW slow#1"));
  assert.ok(slow.length >= 2);
  assert.ok(lines.indexOf(slow.at(-1)!) < lines.findIndex((l) => /slow#1: PASS/.test(l)));
});

test("--timeout overrides every test's globalTimeout", async () => {
  const dir = tmp();
  // The slow test's release file never appears: only the timeout ends it.
  const r = await haltpoint(["run", "test/fixtures/slow", "--timeout", "2s", "-q", "--log-dir", join(dir, "l"), "--json", join(dir, "r.json")], { env: { HP_SLOW_RELEASE: join(dir, "never") }, timeout: 300_000 });
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.all, /!!! slow#1: FAIL \([\d.]+ s\): global timeout of 2 s exceeded/);
  assert.match(r.all, /quick#1: PASS/);
});
