// bench/fleet: three haltpoint processes as three hosts on a long-tailed suite of local
// tests that sleep (no machine work: the figures are scheduling, not CPU). One host starts
// late, one is killed (SIGKILL) mid-run. Makespan (first host start → last host exit) of:
//   queue mode (--queue, BullMQ on a real redis-server), --shard K/3 --durations, --shard K/3
//   by hash — against the best possible for that capacity: max(the longest test,
//   (work + late start − the killed host's time) / 2 hosts), plus one host's own start and
//   exit, measured in the same run (a haltpoint run of one empty test).
// A killed static shard's unfinished tests are lost (reported < started); in queue mode
// its run goes to another host when its lease expires.
//   npm run bench:fleet                    (about 3 minutes)
//   HP_BENCH_SMOKE=1 npm run bench:fleet     (seconds of sleeps, queue and --durations shards only: CI's smoke run, bench/smoke.ts)
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { longTailedSuite } from "../test/helpers/long-tailed-suite.ts";
import { startRedis } from "../test/helpers/redis.ts";
import { sweepAbandonedStateRoots } from "../orchestrator/settings/state-root.ts";
import { fmt, printTable } from "./table.ts";
import { SMOKE } from "./smoke.ts";

const TESTS = SMOKE ? 6 : 24;
const SCALE = SMOKE ? 0.1 : 1; // seconds of sleep per second of the synthetic duration
const LATE_MS = (SMOKE ? 2 : 20) * 1000;
const KILL_AFTER_MS = (SMOKE ? 3 : 25) * 1000;
const LEASE = SMOKE ? "2s" : "5s";
const BIN = new URL("../bin/haltpoint.mjs", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

const dir = mkdtempSync(join(tmpdir(), "hp-bench-fleet-"));
const suiteDir = join(dir, "suite");
const raw = longTailedSuite(TESTS, 11);
const seconds = new Map([...raw].map(([n, ms]) => [n, Math.round(Math.min(ms, 60_000) * SCALE) / 1000]));
await execa("mkdir", ["-p", suiteDir]);
for (const [name, s] of seconds) {
  writeFileSync(join(suiteDir, `${name}.vmtest.ts`), `import { defineTest } from "haltpoint";\nexport default defineTest({ name: "${name}", nodes: { m: {} }, async testScript({ m }) { await m.succeed("sleep ${s}"); } });\n`);
}
writeFileSync(join(dir, "empty.vmtest.ts"), `import { defineTest } from "haltpoint";\nexport default defineTest({ name: "empty", nodes: { m: {} }, async testScript() {} });\n`);
// Earlier durations: a report of the suite's declared times (what an earlier run would measure).
const durations = join(dir, "durations.json");
writeFileSync(
  durations,
  JSON.stringify({
    format: "haltpoint-report",
    version: 2,
    startedAt: new Date().toISOString(),
    durationMs: 0,
    interrupted: false,
    exitStatus: 0,
    flakyFails: false,
    retries: null,
    shard: null,
    jobs: 1,
    logDir: "",
    summary: {},
    loadErrors: [],
    tests: [...seconds].map(([name, s]) => ({ name, file: join(suiteDir, `${name}.vmtest.ts`), retries: 0, notRun: [], runs: [{ run: 1, key: `${name}#1`, outcome: "passed", startedAt: new Date().toISOString(), durationMs: s * 1000, logDir: "", attempts: [] }] })),
  }),
);
const work = [...seconds.values()].reduce((a, b) => a + b, 0) * 1000;
const longest = Math.max(...seconds.values()) * 1000;

const host = (args: string[], name: string): ResultPromise => execa("node", [BIN, "run", suiteDir, "-j", "1", "-q", "--log-dir", join(dir, "logs", name), ...args], { cwd: ROOT, reject: false, all: true, detached: true, env: { CI: "true", NO_COLOR: "1" } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const reportedRuns = (f: string): number => (existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as { tests: { runs: unknown[] }[] }).tests.reduce((s, t) => s + t.runs.length, 0) : 0);

/** Three hosts: #1 at once, #2 after LATE_MS, #3 at once and killed after KILL_AFTER_MS. */
async function fleet(label: string, argsOf: (k: number) => string[]): Promise<{ label: string; ms: number; reported: number }> {
  const t0 = performance.now();
  const json = (k: number) => join(dir, `${label}-${k}.json`);
  const a = host([...argsOf(1), "--json", json(1)], `${label}-1`);
  const c = host([...argsOf(3), "--json", json(3)], `${label}-3`);
  const killer = sleep(KILL_AFTER_MS).then(() => {
    try {
      process.kill(-c.pid!, "SIGKILL");
    } catch {
      console.error(`bench: ${label}: host 3 had ended before it was to be killed`);
    }
  });
  await sleep(LATE_MS);
  const b = host([...argsOf(2), "--json", json(2)], `${label}-2`);
  await Promise.all([a, b, c, killer]);
  const ms = performance.now() - t0;
  sweepAbandonedStateRoots();
  return { label, ms, reported: [1, 2, 3].reduce((s, k) => s + reportedRuns(json(k)), 0) };
}

const t0 = performance.now();
await execa("node", [BIN, "run", join(dir, "empty.vmtest.ts"), "-j", "1", "-q", "--log-dir", join(dir, "logs", "empty")], { cwd: ROOT, env: { CI: "true" } });
const startupMs = performance.now() - t0;
const redis = await startRedis();
try {
  const results = [
    await fleet("queue", (k) => ["--queue", redis.url("bench"), "--queue-host", `host-${k}`, "--queue-lease", LEASE, "--durations", durations]),
    await fleet("durations", (k) => ["--shard", `${k}/3`, "--durations", durations]),
    // At smoke scale the two ways hosts share a suite (a queue, static shards), once each.
    ...(SMOKE ? [] : [await fleet("hash", (k) => ["--shard", `${k}/3`])]),
  ];
  const queueReport = join(dir, "queue-merged.json");
  await execa("node", [BIN, "queue", "report", redis.url("bench"), "--json", queueReport], { cwd: ROOT, reject: false });
  const best = Math.max(longest, (work + LATE_MS - KILL_AFTER_MS) / 2) + startupMs;
  const rows = results.map((r) => [
    r.label === "queue" ? "queue mode (--queue)" : r.label === "durations" ? "--shard K/3 --durations" : "--shard K/3 (hash)",
    fmt(r.ms / 1000, 1),
    `${fmt(r.ms / best)}x`,
    `${r.label === "queue" ? reportedRuns(queueReport) : r.reported}/${TESTS}`,
  ]);
  printTable(
    `${TESTS} local tests sleeping ${fmt(work / 1000, 1)} s in all (longest ${fmt(longest / 1000, 1)} s, Pareto), 3 hosts × 1 job: host 2 starts ${LATE_MS / 1000} s late, host 3 is killed after ${KILL_AFTER_MS / 1000} s; best possible ${fmt(best / 1000, 1)} s (one host's start and exit: ${fmt(startupMs / 1000, 1)} s)${SMOKE ? " [smoke]" : ""}`,
    ["hosts share the suite by", "makespan s", "vs best possible", "runs reported"],
    rows,
  );
} finally {
  await redis.kill();
}
