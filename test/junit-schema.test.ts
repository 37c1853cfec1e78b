// The JUnit report validates against the JUnit schema CI tools use (Jenkins/Ant structure
// plus Surefire's flakyFailure/rerunFailure), checked by a real validator: xmllint.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { haltpoint, ROOT } from "./helpers/cli.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const XSD = join(ROOT, "test/fixtures/junit/junit.xsd");
const tmp = () => tempDir("hp-junit-");

async function validate(file: string): Promise<{ ok: boolean; output: string }> {
  const r = await execa("xmllint", ["--noout", "--schema", XSD, file], { reject: false, all: true }).catch((e: Error) => ({ exitCode: -1, all: e.message }));
  if (r.exitCode === -1 || /ENOENT/.test(String(r.all))) {
    throw new Error("xmllint not found: install libxml2-utils (apt-get install -y libxml2-utils); .ci/setup installs it");
  }
  return { ok: r.exitCode === 0, output: String(r.all) };
}

test("the validator really checks: a document breaking the schema is rejected", async () => {
  const dir = tmp();
  const bad = [
    // flakyFailure needs its `type` and a <stackTrace>.
    `<testsuites><testsuite name="a" tests="1"><testcase name="a#1"><flakyFailure message="m"/></testcase></testsuite></testsuites>`,
    // an element the schema does not name.
    `<testsuites><testsuite name="a" tests="1"><testcase name="a#1"><flaky/></testcase></testsuite></testsuites>`,
    // time is a number of seconds.
    `<testsuites><testsuite name="a" tests="1"><testcase name="a#1" time="1.2 s"/></testsuite></testsuites>`,
    // an Ant timestamp has no time zone.
    `<testsuites><testsuite name="a" tests="1" timestamp="2024-01-01T00:00:00.000Z"/></testsuites>`,
  ];
  for (const [i, xml] of bad.entries()) {
    const f = join(dir, `bad${i}.xml`);
    writeFileSync(f, xml);
    const r = await validate(f);
    assert.equal(r.ok, false, `bad${i} must not validate: ${xml}`);
  }
  const good = join(dir, "good.xml");
  writeFileSync(good, `<testsuites><testsuite name="a" tests="1" timestamp="2024-01-01T00:00:00"><testcase name="a#1" time="0.5"><flakyFailure type="Error" message="m"><stackTrace>x</stackTrace><system-out>o</system-out></flakyFailure></testcase></testsuite></testsuites>`);
  assert.equal((await validate(good)).ok, true);
});

test("a run with passes, failures, flaky and retried failures, a crash and a load error writes valid JUnit", async () => {
  const dir = tmp();
  const r = await haltpoint([
    "run", "test/fixtures/suite", "test/fixtures/retry", "test/fixtures/broken/syntax.vmtest.ts", "test/fixtures/broken/exit.vmtest.ts",
    "--retries", "1", "--jobs", "2", "-q", "--log-dir", join(dir, "logs"), "--junit", join(dir, "junit.xml"), "--json", join(dir, "r.json"),
  ]);
  assert.equal(r.exitCode, 2, r.all);
  const file = join(dir, "junit.xml");
  const v = await validate(file);
  assert.ok(v.ok, v.output);
  const xml = readFileSync(file, "utf8");
  const testcase = (name: string) => {
    const m = new RegExp(`<testcase name="${name}"[^>]*?(?:/>|>([\\s\\S]*?)</testcase>)`).exec(xml);
    assert.ok(m, `testcase ${name} in\n${xml}`);
    return m[1] ?? "";
  };
  // Flaky (as Surefire and nextest write it): no <failure>, a <flakyFailure> per failed attempt.
  const once = testcase("once#1");
  assert.doesNotMatch(once, /<failure/);
  assert.equal([...once.matchAll(/<flakyFailure message="machine m: command `echo first attempt fails; exit 7` failed \(exit code 7\)" type="MachineError">/g)].length, 1);
  assert.match(once, /<flakyFailure[^>]*>\s*<stackTrace>[\s\S]*attempt 1, logs: [\s\S]*<\/stackTrace>\s*<system-out>[\s\S]*must succeed: echo first attempt fails/);
  // declared: retries 2 in the file, overridden by --retries 1 → two failed attempts: FAIL.
  const declared = testcase("declared#1");
  assert.match(declared, /<failure message="attempt 1 of 3 fails" type="Error">/);
  assert.match(declared, /<rerunFailure message="attempt 2 of 3 fails" type="Error">\s*<stackTrace>/);
  // Failed on every attempt: <failure> for the first, <rerunFailure> for the retry.
  const always = testcase("always#1");
  assert.match(always, /<failure message="machine m: command `echo attempt 1 fails; exit 3`/);
  assert.match(always, /<rerunFailure message="machine m: command `echo attempt 2 fails; exit 3`/);
  assert.match(testcase("exit#1"), /<failure message="worker crashed: worker exited with code: 3[^"]*"[^>]*>[\s\S]*<rerunFailure message="worker crashed/, "a crashed worker is retried too");
  assert.doesNotMatch(testcase("pass#1"), /<failure|Failure/);
  assert.match(xml, /<testsuite name="load errors"[\s\S]*<error message="[^"]*syntax\.vmtest\.ts: cannot load/);
  // Counts: flaky runs are not failures.
  assert.match(xml, /<testsuites name="haltpoint" tests="7" failures="4" errors="1"/);

  // The merged report of the same run is valid too.
  const m = await haltpoint(["merge", join(dir, "r.json"), "--junit", join(dir, "merged.xml")]);
  assert.equal(m.exitCode, 2, m.all);
  const mv = await validate(join(dir, "merged.xml"));
  assert.ok(mv.ok, mv.output);
  assert.match(readFileSync(join(dir, "merged.xml"), "utf8"), /<flakyFailure[^>]*>\s*<stackTrace>[\s\S]*?<system-out>[\s\S]*must succeed: echo first attempt fails/, "failed attempts keep their output through merge");
});
