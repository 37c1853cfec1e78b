// Queue mode on a real engine: a real redis-server per test (Debian's), several real
// haltpoint processes as hosts (local machines: quick), BullMQ's leases between them.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { BIN, ROOT, haltpoint, watchOutput } from "./helpers/cli.ts";
import { startRedis, type TestRedis } from "./helpers/redis.ts";
import { tempDir } from "./helpers/temp-dirs.ts";
import { parseQueueAddress, redisOptions } from "../orchestrator/queue/address.ts";
import { suiteFingerprint } from "../orchestrator/queue/fingerprint.ts";
import { BULL_PREFIX, QUEUE_FORMAT, QUEUE_FORMAT_VERSION, checkResult, decodeSuite, queueKeys, type SuiteRecord } from "../orchestrator/queue/format.ts";
import { QueueRefusal, joinQueue, jobOrder } from "../orchestrator/queue/producer.ts";
import { expandRuns, type PlannedTest } from "../orchestrator/selection/plan.ts";
import { sweepAbandonedStateRoots } from "../orchestrator/settings/state-root.ts";

/** A host's whole life (start, collect, run, close): generous, the machine is shared (not a speed limit). */
const HOST_TIMEOUT = 600_000;
const tmp = () => tempDir("hp-fleet-");
const readJson = (f: string) => JSON.parse(readFileSync(f, "utf8"));
const started: TestRedis[] = [];
const redis = async (o: { password?: string } = {}) => {
  const r = await startRedis(o);
  started.push(r);
  return r;
};
after(async () => {
  for (const r of started) await r.kill();
});

/** Every run of the merged report, as `key@host`. */
const runsOf = (report: any): string[] => report.tests.flatMap((t: any) => t.runs.map((r: any) => `${r.key}@${r.attempts.at(-1).host}`));

test("queue addresses: redis://[:PASSWORD@]HOST:PORT/NAME, one-line errors naming the flag, the password never shown", () => {
  assert.deepEqual(parseQueueAddress("redis://127.0.0.1:6379/suite-1"), { host: "127.0.0.1", port: 6379, name: "suite-1", shown: "redis://127.0.0.1:6379/suite-1" });
  const p = parseQueueAddress("redis://:s3cr%40t@redis.ci:7000/nightly.42");
  assert.equal(p.password, "s3cr@t");
  assert.equal(p.shown, "redis://:***@redis.ci:7000/nightly.42");
  for (const bad of ["http://h:1/n", "redis://h/n", "redis://h:1/", "redis://h:1/a/b", "redis://:pw@h:1/", "nonsense"]) {
    assert.throws(
      () => parseQueueAddress(bad),
      (e: Error) => /^--queue takes redis:\/\/\[:PASSWORD@\]HOST:PORT\/NAME \(.*\), got '.*'$/.test(e.message) && !e.message.includes("\n") && !e.message.includes("pw@"),
      bad,
    );
  }
});

test("the queue format against a real Redis: one host makes the suite, jobs longest first; a different suite is refused in one line; a password works", async () => {
  const r = await redis({ password: "hunter2" });
  const address = parseQueueAddress(r.url("fmt", "hunter2"));
  const conn = new Redis({ ...redisOptions(address), lazyConnect: true });
  await conn.connect();
  const queue = new Queue("fmt", { connection: redisOptions(address), prefix: BULL_PREFIX });
  try {
    const tests: PlannedTest[] = ["t1", "t2", "t3"].map((n) => ({ file: join(ROOT, "test/fixtures/fleet", `${n}.vmtest.ts`), name: n, nodes: [], globalTimeout: 60, enableDebugHook: false }));
    const runs = expandRuns(tests, 2);
    const fp = await suiteFingerprint("1.0.0", tests, { repeat: 2, flakyFails: false });
    const suite: SuiteRecord = { format: QUEUE_FORMAT, version: QUEUE_FORMAT_VERSION, fingerprint: fp, createdBy: "a", createdAt: Date.now(), tests: tests.map((t) => ({ name: t.name, file: t.file, retries: 0 })), runs: runs.length, flakyFails: false, passWithNoTests: false, retries: null, maxFail: null };
    const order = jobOrder(runs, new Map([["t2", 5000], ["t3", 100]]));
    assert.deepEqual(order.map((j) => j.key), ["t2#1", "t2#2", "t1#1", "t1#2", "t3#1", "t3#2"], "longest expected first; unknown t1 counts as the median");
    const first = await joinQueue(conn, queue, "fmt", address.shown, suite, order);
    assert.equal(first.made, true);
    const again = await joinQueue(conn, queue, "fmt", address.shown, { ...suite, createdBy: "b" }, order);
    assert.deepEqual([again.made, again.suite.createdBy], [false, "a"], "the second host joins the first one's suite");
    assert.equal((await queue.getJobCounts("wait")).wait, 6, "its jobs are added once");
    const waiting = await queue.getJobs(["wait"], 0, -1, true);
    assert.deepEqual(waiting.map((j) => j.data.key), order.map((j) => j.key), "and taken in that order");
    assert.deepEqual(decodeSuite(await conn.get(queueKeys("fmt").suite), address.shown).fingerprint, fp);
    // Another version, another file: refused, one line naming what differs.
    const other = await suiteFingerprint("1.0.1", tests, { repeat: 2, flakyFails: false });
    await assert.rejects(joinQueue(conn, queue, "fmt", address.shown, { ...suite, fingerprint: other }, order), (e: Error) => e instanceof QueueRefusal && /refuses to join: the queue's suite runs haltpoint 1\.0\.0, this host 1\.0\.1/.test(e.message) && !e.message.includes("\n") && !e.message.includes("hunter2"));
    const fewer = await suiteFingerprint("1.0.0", tests.slice(0, 2), { repeat: 2, flakyFails: false });
    await assert.rejects(joinQueue(conn, queue, "fmt", address.shown, { ...suite, fingerprint: fewer }, order), /test files differ from the queue's suite: test\/fixtures\/fleet\/t3\.vmtest\.ts \(not here\)/);
    const moreRepeats = await suiteFingerprint("1.0.0", tests, { repeat: 3, flakyFails: false });
    await assert.rejects(joinQueue(conn, queue, "fmt", address.shown, { ...suite, fingerprint: moreRepeats }, order), /the run options .* differ/);
    assert.throws(() => checkResult({ format: QUEUE_FORMAT, version: 99, host: "a", key: "k", lostOn: [], bundles: [] }, "7"), /job 7: result record: queue format version 99 is newer/);
    // A suite record whose host has not added its runs yet is not a suite with no runs: the report waits.
    await conn.set(queueKeys("half").suite, JSON.stringify({ ...suite, createdBy: "slow" }));
    const early = await haltpoint(["queue", "report", r.url("half", "hunter2"), "--timeout", "2s", "--host-wait", "1m"], { timeout: HOST_TIMEOUT });
    assert.equal(early.exitCode, 2, early.all);
    assert.match(early.all, /still not done after 2 s \(0 of 6 runs done, 0 running, 6 waiting\)/);
  } finally {
    await queue.close();
    conn.disconnect();
  }
  // Without the password: one line, exit 2, the password not shown.
  const denied = await haltpoint(["run", "test/fixtures/fleet/t1.vmtest.ts", "--queue", r.url("fmt"), "--log-dir", join(tmp(), "l")], { env: { HP_FLEET_SLEEP: "0" } });
  assert.equal(denied.exitCode, 2, denied.all);
  assert.match(denied.all, /haltpoint: redis:\/\/127\.0\.0\.1:\d+\/fmt: cannot reach Redis: NOAUTH/);
});

test("three hosts share a suite dynamically: every run reported exactly once; a host with other test files refuses in one line", async () => {
  const r = await redis();
  const dir = tmp();
  const q = r.url("three");
  const host = (h: string) => haltpoint(["run", "test/fixtures/fleet", "--repeat", "2", "-j", "1", "-q", "--queue", q, "--queue-host", h, "--log-dir", join(dir, h), "--json", join(dir, `${h}.json`)], { env: { HP_FLEET_SLEEP: "0.5" }, timeout: HOST_TIMEOUT });
  const hosts = await Promise.all(["a", "b", "c"].map(host));
  for (const h of hosts) assert.equal(h.exitCode, 0, h.all);
  const rep = await haltpoint(["queue", "report", q, "--json", join(dir, "merged.json"), "--junit", join(dir, "merged.xml")], { timeout: HOST_TIMEOUT });
  assert.equal(rep.exitCode, 0, rep.all);
  assert.match(rep.all, /haltpoint queue report: redis:\/\/127\.0\.0\.1:\d+\/three, 3 hosts \(.*\), 6 tests, 12 runs/);
  const merged = readJson(join(dir, "merged.json"));
  const runs = runsOf(merged);
  assert.equal(runs.length, 12);
  assert.deepEqual(new Set(runs.map((x) => x.split("@")[0])).size, 12, "each run once");
  const perHost = ["a", "b", "c"].map((h) => runs.filter((x) => x.endsWith(`@${h}`)).length);
  assert.ok(perHost.every((n) => n > 0), `every host took runs: ${perHost}`);
  // Each host's own report holds exactly the runs the merged one gives it.
  for (const h of ["a", "b", "c"]) assert.deepEqual(runsOf(readJson(join(dir, `${h}.json`))).map((x) => x.split("@")[0]).sort(), runs.filter((x) => x.endsWith(`@${h}`)).map((x) => x.split("@")[0]).sort());
  assert.equal((readFileSync(join(dir, "merged.xml"), "utf8").match(/<testcase /g) ?? []).length, 12);
  // A late host with a different suite (fewer files) refuses, one line, exit 2.
  const odd = await haltpoint(["run", "test/fixtures/fleet/t1.vmtest.ts", "--repeat", "2", "--queue", q, "--log-dir", join(dir, "odd")]);
  assert.equal(odd.exitCode, 2, odd.all);
  assert.match(odd.all, /^haltpoint: redis:\/\/127\.0\.0\.1:\d+\/three: this host refuses to join: test files differ from the queue's suite: test\/fixtures\/fleet\/t2\.vmtest\.ts \(not here\), .* and \d+ more \(a queue is one suite run: give each run its own NAME\)$/m);
});

test("kill -9 of a host mid-run loses no run: its closed connection is seen at once (long before its lease), another host runs it, the report names the dead host", async () => {
  const r = await redis();
  const dir = tmp();
  const q = r.url("kill");
  // A lease far longer than the suite: only the closed connection can hand the run over in time.
  const args = (h: string) => ["run", "test/fixtures/fleet", "--repeat", "2", "-j", "1", "--queue", q, "--queue-host", h, "--queue-lease", "10m", "--log-dir", join(dir, h), "--json", join(dir, `${h}.json`)];
  const env = { CI: "true", NO_COLOR: "1", HP_FLEET_SLEEP: "1.5" };
  // The victim leads its own process group: kill -9 takes its machines' shells with it.
  const victim = execa("node", [BIN, ...args("victim")], { cwd: ROOT, reject: false, all: true, env, detached: true });
  const seen = watchOutput(victim as any, HOST_TIMEOUT);
  const others = ["a", "b"].map((h) => haltpoint(args(h), { env, timeout: HOST_TIMEOUT }));
  await seen.waitFor(/m: must succeed: sleep 1\.5/);
  process.kill(-victim.pid!, "SIGKILL");
  await victim;
  const done = await Promise.all(others);
  for (const h of done) assert.equal(h.exitCode, 0, h.all);
  // The victim's heartbeat (renewed for a 10 min lease) has not expired: the lease did not hand it over.
  const client = new Redis({ port: r.port, host: "127.0.0.1" });
  assert.ok((await client.pttl(queueKeys("kill").alive("victim"))) > 0, "the victim's lease still runs");
  client.disconnect();
  sweepAbandonedStateRoots(); // the victim's state dir (its owner is gone)
  const rep = await haltpoint(["queue", "report", q, "--json", join(dir, "merged.json")], { timeout: HOST_TIMEOUT });
  assert.equal(rep.exitCode, 0, rep.all);
  const merged = readJson(join(dir, "merged.json"));
  const runs = runsOf(merged);
  assert.equal(runs.length, 12, "no run lost");
  assert.equal(new Set(runs.map((x) => x.split("@")[0])).size, 12, "none twice");
  const handedOver = merged.tests.flatMap((t: any) => t.runs).filter((x: any) => x.attempts[0].lostHosts?.includes("victim"));
  assert.equal(handedOver.length, 1, "the run the victim held is recorded as handed over");
  const key = handedOver[0].key;
  assert.match(rep.all, new RegExp(`^${key}: host victim died holding it \\(its connection closed\\); run on (a|b)$`, "m"));
  // One host that saw it said so, naming the run.
  const told = done.map((h) => h.all).join("\n");
  assert.match(told, new RegExp(`queue redis://127\\.0\\.0\\.1:\\d+/kill: host victim is gone \\(its connection closed\\) holding ${key}: back in the queue, the next free host runs it$`, "m"));
});

test("the only host killed (kill -9) mid-run: queue report does not hang — after --host-wait the dead host's run is lost (one line naming it), the runs done stay, exit 1; a host arriving later is stopped with a line, exit 1", async () => {
  const r = await redis();
  const dir = tmp();
  const q = r.url("alone");
  const env = { CI: "true", NO_COLOR: "1", HP_FLEET_SLEEP: "1" };
  const victim = execa("node", [BIN, "run", "test/fixtures/fleet", "--repeat", "2", "-j", "1", "--queue", q, "--queue-host", "victim", "--queue-lease", "2s", "--log-dir", join(dir, "victim")], { cwd: ROOT, reject: false, all: true, env, detached: true });
  const seen = watchOutput(victim as any, HOST_TIMEOUT);
  const report = haltpoint(["queue", "report", q, "--host-wait", "3s", "--json", join(dir, "merged.json")], { timeout: HOST_TIMEOUT });
  const said = watchOutput(report, HOST_TIMEOUT);
  // At least one run done, the next one running: then the process group dies at once.
  await seen.waitFor(/: PASS[\s\S]*m: must succeed: sleep 1/);
  process.kill(-victim.pid!, "SIGKILL");
  await victim;
  sweepAbandonedStateRoots();
  const passed = (seen.text().match(/^t\d#\d: PASS/gm) ?? []).map((l) => l.split(":")[0]);
  const rep = await report;
  assert.equal(rep.exitCode, 1, rep.all);
  const gone = /^haltpoint queue report: host victim is gone \(its heartbeat expired\) holding (t\d#\d): no host is alive to take it over: waiting up to 3 s for one \(--host-wait\)$/m.exec(said.text());
  assert.ok(gone, rep.all);
  assert.match(rep.all, /^haltpoint queue report: gave up on redis:\/\/127\.0\.0\.1:\d+\/alone: no host alive for 3 s \(--host-wait\); 1 run lost with host victim, \d+ not run: the suite did not finish$/m);
  const merged = readJson(join(dir, "merged.json"));
  assert.equal(merged.stoppedBy.kind, "hosts-gone");
  const runs = merged.tests.flatMap((t: any) => t.runs);
  const lost = runs.filter((x: any) => x.failure?.kind === "hosts-lost");
  assert.deepEqual(lost.map((x: any) => [x.key, x.attempts[0].lostHosts]), [[gone[1], ["victim"]]], "the run it held is lost, naming the host");
  assert.equal(lost[0].logDir, `victim:${join(dir, "victim")}`, "its log is named where it is: on the dead host");
  assert.ok(existsSync(join(dir, "victim", gone[1]!)), "and is there");
  assert.deepEqual(runs.filter((x: any) => x.outcome === "passed").map((x: any) => x.key).sort(), passed.sort(), "every run it finished is in the report");
  assert.equal(runs.length + merged.summary.notRun, 12, "every run once: done, lost or not run");
  // The suite is closed: a host arriving now runs nothing and fails, saying why.
  const late = await haltpoint(["run", "test/fixtures/fleet", "--repeat", "2", "-j", "1", "--queue", q, "--queue-host", "late", "--log-dir", join(dir, "late"), "--json", join(dir, "late.json")], { env, timeout: HOST_TIMEOUT });
  assert.equal(late.exitCode, 1, late.all);
  assert.match(late.all, /^haltpoint: queue redis:\/\/127\.0\.0\.1:\d+\/alone: this host stopped taking runs because queue report stopped the suite \(no host alive for 3 s \(1 host died holding runs: victim\)\): the suite failed$/m);
  assert.equal(runsOf(readJson(join(dir, "late.json"))).length, 0);
});

test("the only host killed, a new one comes (a restarted pod): the dead host's run goes back to the queue and the new host runs it; the report waits for it, exit 0", async () => {
  const r = await redis();
  const dir = tmp();
  const q = r.url("phoenix");
  const args = (h: string) => ["run", "test/fixtures/fleet", "-j", "1", "--queue", q, "--queue-host", h, "--queue-lease", "2s", "--log-dir", join(dir, h)];
  const env = { CI: "true", NO_COLOR: "1", HP_FLEET_SLEEP: "1" };
  const victim = execa("node", [BIN, ...args("victim")], { cwd: ROOT, reject: false, all: true, env, detached: true });
  const seen = watchOutput(victim as any, HOST_TIMEOUT);
  const report = haltpoint(["queue", "report", q, "--json", join(dir, "merged.json")], { timeout: HOST_TIMEOUT });
  const said = watchOutput(report, HOST_TIMEOUT);
  await seen.waitFor(/m: must succeed: sleep 1/);
  process.kill(-victim.pid!, "SIGKILL");
  await victim;
  sweepAbandonedStateRoots();
  await said.waitFor(/host victim is gone \(its heartbeat expired\) holding t\d#1: no host is alive to take it over: waiting up to 60 s for one \(--host-wait\)/);
  const phoenix = await haltpoint(args("phoenix"), { env, timeout: HOST_TIMEOUT });
  assert.equal(phoenix.exitCode, 0, phoenix.all);
  const rep = await report;
  assert.equal(rep.exitCode, 0, rep.all);
  const merged = readJson(join(dir, "merged.json"));
  const runs = runsOf(merged);
  assert.equal(runs.length, 6, "no run lost");
  assert.equal(new Set(runs.map((x) => x.split("@")[0])).size, 6, "none twice");
  const handedOver = merged.tests.flatMap((t: any) => t.runs).filter((x: any) => x.attempts[0].lostHosts?.includes("victim"));
  assert.equal(handedOver.length, 1, rep.all);
  // The new host's first stalled-job check (the lease) or its look at the victim's connection: whichever comes first.
  assert.match(rep.all, new RegExp(`^${handedOver[0].key}: host victim died holding it \\((lease expired|its connection closed)\\); run on phoenix$`, "m"));
});

test("a Redis that goes away mid-suite: one clear error (exit 5), the runs done are in the host's reports", async () => {
  const r = await redis();
  const dir = tmp();
  const h = haltpoint(["run", "test/fixtures/fleet", "--repeat", "3", "-j", "1", "--queue", r.url("gone"), "--queue-host", "lonely", "--log-dir", join(dir, "l"), "--json", join(dir, "l.json")], { env: { HP_FLEET_SLEEP: "0.5" }, timeout: HOST_TIMEOUT });
  const out = watchOutput(h, HOST_TIMEOUT);
  await out.waitFor(/: PASS/);
  await r.kill();
  const res = await h;
  assert.equal(res.exitCode, 5, res.all);
  const errors = res.all.split("\n").filter((l) => /went away|ECONNREFUSED|error/i.test(l));
  assert.equal(errors.length, 1, res.all);
  assert.match(errors[0]!, /^haltpoint: queue redis:\/\/127\.0\.0\.1:\d+\/gone: Redis went away \(.*\); this host stopped taking runs — the runs it finished \((\d+)\) are in .*queue-results\.jsonl and .*l\.json$/);
  const n = Number(/the runs it finished \((\d+)\)/.exec(errors[0]!)![1]);
  assert.ok(n >= 1);
  const local = readFileSync(join(dir, "l", "queue-results.jsonl"), "utf8").trim().split("\n").map((l) => checkResult(JSON.parse(l), "local"));
  assert.equal(local.length, n);
  const report = readJson(join(dir, "l.json"));
  assert.deepEqual(runsOf(report).map((x) => x.split("@")[0]).sort(), local.map((l) => l.key).sort(), "the --json report has the runs done");
  assert.ok(existsSync(join(dir, "l")));
});

test("--until-fail on a 3-host hunt: the first failure stops all three, its bundle is saved and the report says on which host", async () => {
  const r = await redis();
  const dir = tmp();
  const q = r.url("hunt");
  // Local machines have a private /tmp: the gate is where they can see it (removed at the end).
  const gateDir = tempDir("haltpoint-fleet-gate-", "/var/tmp");
  after(() => rmSync(gateDir, { recursive: true, force: true }));
  const gate = join(gateDir, "open");
  // Earlier durations put the hunt first in the queue; the gated tests keep the other hosts busy.
  const durations = join(dir, "durations.json");
  const at = new Date().toISOString();
  const tests = ["hunt", "g1", "g2", "g3", "g4", "g5", "g6"].map((name) => ({ name, file: `test/fixtures/fleet-hunt/${name}.vmtest.ts`, retries: 0, notRun: [], runs: [{ run: 1, key: `${name}#1`, outcome: "passed", startedAt: at, durationMs: name === "hunt" ? 100_000 : 1000, logDir: "", attempts: [] }] }));
  writeFileSync(durations, JSON.stringify({ format: "haltpoint-report", version: 2, startedAt: at, durationMs: 0, interrupted: false, exitStatus: 0, flakyFails: false, retries: null, shard: null, jobs: 1, logDir: "", summary: {}, loadErrors: [], tests }));
  const hosts = ["a", "b", "c"].map((h) => {
    const p = haltpoint(["run", "test/fixtures/fleet-hunt", "-j", "1", "--until-fail", "--queue", q, "--queue-host", h, "--durations", durations, "--save-breakpoints", join(dir, `bundles-${h}`), "--log-dir", join(dir, h), "--json", join(dir, `${h}.json`)], { env: { HP_FLEET_GATE: gate }, timeout: HOST_TIMEOUT });
    return { h, p, out: watchOutput(p, HOST_TIMEOUT) };
  });
  // Every host stops at the one failure (the hunt's host, and the two others through the queue).
  await Promise.all(hosts.map((x) => x.out.waitFor(/haltpoint: --until-fail: hunt#1 failed; starting no more runs/)));
  writeFileSync(gate, ""); // the gated runs in flight may now finish
  const done = await Promise.all(hosts.map((x) => x.p));
  const hunter = hosts.find((x) => /hunt#1: FAIL/.test(x.out.text()))!;
  assert.ok(hunter, hosts.map((x) => x.out.text()).join("\n---\n"));
  // Every host fails: the hunter with its run, the others because the suite they are part of failed (one line why).
  for (const [i, d] of done.entries()) {
    assert.equal(d.exitCode, 1, d.all);
    if (hosts[i] !== hunter) assert.match(d.all, new RegExp(`^haltpoint: queue redis://127\\.0\\.0\\.1:\\d+/hunt: this host stopped taking runs because host ${hunter.h} stopped the suite \\(--until-fail: hunt#1 failed\\): the suite failed$`, "m"));
  }
  const rep = await haltpoint(["queue", "report", q, "--json", join(dir, "merged.json")], { timeout: HOST_TIMEOUT });
  assert.equal(rep.exitCode, 1, rep.all);
  const merged = readJson(join(dir, "merged.json"));
  assert.equal(merged.stoppedBy.kind, "until-fail");
  assert.equal(merged.stoppedBy.run, "hunt#1");
  const runs = runsOf(merged);
  assert.ok(runs.includes(`hunt#1@${hunter.h}`));
  assert.equal(runs.length + merged.summary.notRun, 7, "every run either reported once or not run");
  assert.ok(merged.summary.notRun >= 4, `at most the 2 gated runs in flight ran: ${runs}`);
  const bundle = new RegExp(`hunt#1: bundle on host ${hunter.h}: (.*)`).exec(rep.all);
  assert.ok(bundle, rep.all);
  assert.ok(bundle[1]!.startsWith(join(dir, `bundles-${hunter.h}`)), bundle[1]);
  assert.ok(existsSync(bundle[1]!), "the bundle is on the hunting host's disk");
});
