// Admission on real guests, through the real CLI (one run shares its six guests between the
// assertions): a 3-guest test runs on a 2-core host with the default --cpu-overcommit, and
// a 1-guest test starts while a 2-guest test queued before it waits for room. The order is
// read from the marks the tests themselves write (test/fixtures/admission/marks.ts), not
// from timing. (Running alone is checked step by step in test/unit/resource-budget.test.ts and
// through the scheduler in test/unit/scheduler.test.ts: on real guests it would cost two more boots.)
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { haltpoint } from "./helpers/cli.ts";
import { qemuProcesses } from "./helpers/qemu.ts";
import { emptied } from "./helpers/settled.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const dir = tempDir("hp-adm-");
after(() => rmSync(dir, { recursive: true, force: true }));

test("--cpu-overcommit takes a factor of at least 1, from the flag, HALTPOINT_CPU_OVERCOMMIT or the config file's cpuOvercommit; bad ones are one line", async () => {
  const flag = await haltpoint(["run", "--cpu-overcommit", "0.5", "test/fixtures/admission"]);
  assert.equal(flag.exitCode, 2);
  assert.match(flag.all, /^haltpoint: error: option '--cpu-overcommit <factor>' argument '0\.5' is invalid\. --cpu-overcommit takes a number of at least 1 \(e\.g\. 1\.5\), got '0\.5'$/m);
  const env = await haltpoint(["run", "test/fixtures/admission"], { env: { HALTPOINT_CPU_OVERCOMMIT: "lots" } });
  assert.equal(env.exitCode, 2);
  assert.match(env.all, /^haltpoint: HALTPOINT_CPU_OVERCOMMIT=lots: --cpu-overcommit takes a number of at least 1/m);
  const project = mkdtempSync(join(dir, "cfg-"));
  writeFileSync(join(project, "haltpoint.config.json"), JSON.stringify({ cpuOvercommit: 0 }));
  const cfg = await haltpoint(["run"], { cwd: project });
  assert.equal(cfg.exitCode, 2);
  assert.match(cfg.all, /haltpoint\.config\.json: cpuOvercommit: --cpu-overcommit takes a number of at least 1 \(e\.g\. 1\.5\), got '0'/);
});

test("a 3-guest test runs on 2 cores with the default overcommit; a 1-guest test starts while a 2-guest one waits for room", async () => {
  const marks = join(dir, "marks");
  writeFileSync(marks, "");
  // --cores 2 --jobs 2 are this host's defaults, given so that the test means the same on a bigger CI host.
  const r = await haltpoint(["run", "test/fixtures/admission", "--backend", "qemu", "--cores", "2", "--jobs", "2"], { env: { HP_ADMISSION_MARKS: marks }, timeout: 900_000 });
  assert.equal(r.exitCode, 0, r.all);
  assert.doesNotMatch(r.all, /can never fit|runs alone/);
  const lines = readFileSync(marks, "utf8").trim().split("\n");
  const at = (l: string) => {
    const i = lines.indexOf(l);
    assert.ok(i >= 0, `no '${l}' in ${JSON.stringify(lines)}`);
    return i;
  };
  // Which of the 3-guest and 1-guest tests writes its first mark first is a race of two worker
  // threads loading their files (both are admitted at once): only that the 3-guest one ran counts.
  at("three start");
  assert.ok(at("one start") < at("two start"), `the 1-guest test started before the 2-guest test queued ahead of it: ${lines.join(", ")}`);
  assert.ok(at("three end") < at("two start"), `the 2-guest test waited for the 3-guest one's vCPUs: ${lines.join(", ")}`);
  assert.deepEqual(await emptied(() => qemuProcesses()), []);
});
