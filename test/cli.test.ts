// The real CLI, spawned as a user would run it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { haltpoint } from "./helpers/cli.ts";
import { processesMatching } from "./helpers/machine-context.ts";
import { emptied, settled } from "./helpers/settled.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const tmp = () => tempDir("hp-cli-");

test("--help and --version exit 0; bad usage exits 2 with a one-line error naming the flag", async () => {
  const help = await haltpoint(["run", "--help"]);
  assert.equal(help.exitCode, 0);
  assert.match(help.all, /--jobs <n>/);
  const version = await haltpoint(["--version"]);
  assert.equal(version.exitCode, 0);
  assert.match(version.all, /^\d+\.\d+\.\d+/);
  const jobs = await haltpoint(["run", "examples", "--jobs", "zero"]);
  assert.equal(jobs.exitCode, 2);
  assert.match(jobs.all, /--jobs takes a positive integer, got 'zero'/);
  const backend = await haltpoint(["run", "examples", "--backend", "docker"]);
  assert.equal(backend.exitCode, 2);
  assert.match(backend.all, /--backend.*docker/);
  const missing = await haltpoint(["run", "no/such/dir"]);
  assert.equal(missing.exitCode, 2);
  assert.match(missing.all, /haltpoint: no such file or directory: no\/such\/dir/);
  const unknown = await haltpoint(["run", "--frobnicate"]);
  assert.equal(unknown.exitCode, 2);
  assert.match(unknown.all, /unknown option '--frobnicate'/);
});

test("a suite with broken files, crashes and timeouts: every other test still runs, every failure has its reason", async () => {
  const dir = tmp();
  const r = await haltpoint([
    "run", "test/fixtures/broken", "test/fixtures/suite",
    "--jobs", "2", "--worker-memory", "64", "--abort-grace", "2",
    "--log-dir", join(dir, "logs"), "--junit", join(dir, "junit.xml"), "--json", join(dir, "report.json"),
  ]);
  const out = r.all;
  assert.equal(r.exitCode, 2, "a file that cannot load makes the exit status 2\n" + out);
  // Load errors: one line each, naming the file.
  assert.match(out, /!!! \S+syntax\.vmtest\.ts: cannot load: line 2:\d+: Unexpected ";"/);
  assert.match(out, /!!! \S+no-default\.vmtest\.ts: no default export/);
  assert.match(out, /!!! \S+bad-backend\.vmtest\.ts: node 'web': unknown backend 'docker' \(expected local or qemu\)/);
  assert.match(out, /!!! \S+bad-memory\.vmtest\.ts: node 'db': memory must be an integer/);
  // Failures, each with its reason.
  assert.match(out, /!!! fail#1: FAIL .*machine server: command `false` failed \(exit code 1\)/);
  // Its own timer: the run fails with that error; the worker survives (worker/late-errors.ts).
  assert.match(out, /!!! timer-crash#1: FAIL [^\n]*: boom from a timer/);
  assert.match(out, /!!! exit#1: FAIL .*worker crashed: worker exited with code: 3/);
  assert.match(out, /!!! oom#1: FAIL .*worker crashed: .*memory limit/);
  assert.match(out, /!!! timeout#1: FAIL .*global timeout of 2 s exceeded/);
  assert.match(out, /!!! busy-loop#1: FAIL .*global timeout of 1 s exceeded; worker killed after 2 s/);
  assert.match(out, /pass#1: PASS/);
  assert.match(out, /fail#1 server: must succeed: echo about to fail/, "events are printed with the run and machine prefix");
  assert.match(out, /1 passed, 6 failed, 4 could not load/);

  const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
  assert.equal(report.exitStatus, 2);
  assert.deepEqual(report.summary, { runs: 7, passed: 1, flaky: 0, failed: 6, notRun: 0, loadErrors: 4 });
  const outcome = (name: string) => report.tests.find((t: { name: string }) => t.name === name).runs[0];
  assert.equal(outcome("pass").outcome, "passed");
  assert.match(outcome("fail").error, /command `false` failed/);

  const junit = readFileSync(join(dir, "junit.xml"), "utf8");
  assert.match(junit, /^<\?xml version="1.0" encoding="UTF-8"\?>/);
  assert.match(junit, /<testsuites name="haltpoint" tests="11" failures="6" errors="4"/);
  assert.match(junit, /<testcase name="fail#1" classname="fail"[^>]*>\s*<failure message="machine server: command `false` failed \(exit code 1\)" type="MachineError">/);
  assert.match(junit, /fail#1 server: must succeed: echo about to fail/, "the failure carries the run's log");

  // Per-run pino logs and per-machine console files.
  const failLog = readFileSync(join(dir, "logs", "fail#1", "run.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(failLog.some((l) => l.event === "log" && l.machine === "server" && l.msg === "must succeed: false"));
  assert.equal(failLog.at(-1).event, "run-end");
  assert.equal(failLog.at(-1).outcome, "failed");
  assert.ok(existsSync(join(dir, "logs", "fail#1", "server.console.log")));

  // Nothing left behind: the crashed workers' sandboxes were killed by the ledger.
  assert.deepEqual(await emptied(() => processesMatching("sleep 300")), []);
});

test("the examples pass on the local backend", async () => {
  const dir = tmp();
  const r = await haltpoint(["run", "examples", "--backend", "local", "--filter", "^(?!.*(qemu|debian|nixos))", "--log-dir", dir]);
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, /0 failed/);
  assert.ok(readdirSync(dir).length >= 4, "at least four example runs");
});

test("--repeat, --filter and --until-fail: runs are numbered, filtered, and admission stops at the first failure", async () => {
  const dir = tmp();
  const rep = await haltpoint(["run", "test/fixtures/suite", "--repeat", "3", "--filter", "^pass$", "-q", "--json", join(dir, "r.json")]);
  assert.equal(rep.exitCode, 0, rep.all);
  const report = JSON.parse(readFileSync(join(dir, "r.json"), "utf8"));
  assert.deepEqual(report.tests.map((t: { name: string }) => t.name), ["pass"]);
  assert.deepEqual(report.tests[0].runs.map((x: { key: string }) => x.key), ["pass#1", "pass#2", "pass#3"]);

  const uf = await haltpoint(["run", "test/fixtures/flaky", "--repeat", "20", "--jobs", "1", "--until-fail", "-q", "--json", join(dir, "u.json")]);
  assert.equal(uf.exitCode, 1, uf.all);
  assert.match(uf.all, /--until-fail: third#3 failed; starting no more runs/);
  const u = JSON.parse(readFileSync(join(dir, "u.json"), "utf8"));
  assert.deepEqual(u.tests[0].runs.map((x: { outcome: string }) => x.outcome), ["passed", "passed", "failed"]);
  assert.equal(u.summary.notRun, 17);
});

test("SIGINT stops the run: reports are written, exit status 130, no process left behind", async () => {
  const dir = tmp();
  const marker = `hp-int-${process.pid}-${Date.now()}`;
  const child = haltpoint(["run", "test/fixtures/interrupt", "--jobs", "2", "--json", join(dir, "r.json"), "--junit", join(dir, "j.xml")], {
    env: { HP_TEST_MARKER: marker },
  });
  let seen = "";
  child.all!.on("data", (c) => (seen += c));
  await settled(() => seen, (s) => /must succeed: echo hanging now/.test(s));
  assert.match(seen, /must succeed: echo hanging now/);
  assert.equal((await processesMatching(marker)).length, 1, "the test's machine is running");
  child.kill("SIGINT");
  const r = await child;
  assert.equal(r.exitCode, 130, r.all);
  assert.match(r.all, /SIGINT: starting no more tests/);
  assert.match(r.all, /!!! hang#1: FAIL .*interrupted \(SIGINT\)/);
  const report = JSON.parse(readFileSync(join(dir, "r.json"), "utf8"));
  assert.equal(report.interrupted, true);
  assert.equal(report.exitStatus, 130);
  assert.ok(existsSync(join(dir, "j.xml")));
  assert.deepEqual(await emptied(() => processesMatching(marker)), [], "the machine's processes are gone");
});

test("an orchestrator killed with SIGKILL leaves no sandbox process behind (parent-death signal)", async () => {
  const marker = `hp-kill-${process.pid}-${Date.now()}`;
  // Its own state root: a SIGKILLed orchestrator cannot remove its state dir, the test does.
  const stateDir = tempDir("hp-cli-state-", "/var/tmp");
  const child = haltpoint(["run", "test/fixtures/interrupt/hang.vmtest.ts"], { env: { HP_TEST_MARKER: marker, HALTPOINT_STATE_DIR: stateDir } });
  let seen = "";
  child.all!.on("data", (c) => (seen += c));
  await settled(() => seen, (s) => /must succeed: echo hanging now/.test(s));
  assert.equal((await processesMatching(marker)).length, 1);
  child.kill("SIGKILL");
  await child;
  assert.deepEqual(await emptied(() => processesMatching(marker)), []);
  rmSync(stateDir, { recursive: true, force: true });
});
