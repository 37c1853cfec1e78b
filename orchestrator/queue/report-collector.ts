// `haltpoint queue report redis://HOST:PORT/NAME`: wait until the queue's work is done (no
// run waiting, none held by a host — or, once a host stopped the suite, none held), then
// turn the result records into one JSON report per host and merge them with `haltpoint
// merge`'s code: the merged summary, JUnit, JSON and HTML, and the suite's exit status.
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { UsageError } from "../selection/discovery.ts";
import { reportMerged, type ReportFile } from "../commands/merge.ts";
import { JSON_REPORT_FORMAT, JSON_REPORT_VERSION, type JsonReport, type JsonTest } from "../reporters/json-report.ts";
import { causeText, stopText } from "../reporters/failure-text.ts";
import { parseQueueAddress, redisOptions, type QueueAddress } from "./address.ts";
import { HostWatch, DEFAULT_HOST_WAIT_MS } from "./host-watch.ts";
import type { HeldRun } from "./host-liveness.ts";
import { BULL_PREFIX, REPORT_HOST, type StopRecord, checkPayload, checkResult, decodeHost, decodeStop, decodeSuite, queueKeys, type ResultRecord, type SuiteRecord } from "./format.ts";

export interface QueueReportOptions {
  address: string;
  json?: string;
  junit?: string;
  html?: string;
  /** Give up waiting after this long (ms): exit 2 with what is still held. */
  waitMs?: number;
  /** With runs left and no host alive this long (ms), report the runs dead hosts held as lost, the rest as not run. */
  hostWaitMs?: number;
  out?: NodeJS.WritableStream;
}

const EMPTY_STATS: JsonTest["stats"] = { runs: 0, attempts: 0, failures: 0, flakyRuns: 0, failedRuns: 0, failureRate: 0, wilson95: { low: 0, high: 1 }, groups: [] };

export async function queueReportCommand(o: QueueReportOptions): Promise<number> {
  let address: QueueAddress;
  try {
    address = parseQueueAddress(o.address, "queue report");
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const out = o.out ?? process.stdout;
  const opts = redisOptions(address);
  const redis = new Redis({ ...opts, lazyConnect: true, maxRetriesPerRequest: 3 });
  let lastError: string | undefined;
  redis.on("error", (e: Error) => (lastError = e.message));
  const queue = new Queue(address.name, { connection: opts, prefix: BULL_PREFIX });
  queue.on("error", (e: Error) => (lastError = e.message));
  const keys = queueKeys(address.name);
  let gaveUp: { gone: string[] } | undefined;
  try {
    try {
      await redis.connect();
    } catch (e) {
      throw new UsageError(`${address.shown}: cannot reach Redis: ${lastError ?? (e as Error).message}`);
    }
    const end = Date.now() + (o.waitMs ?? 24 * 3600_000);
    let said = "";
    const say = (s: string): void => {
      if (s !== said) out.write(`haltpoint queue report: ${s}\n`);
      said = s;
    };
    const watch = new HostWatch(redis, queue, address, o.hostWaitMs ?? DEFAULT_HOST_WAIT_MS, (line) => out.write(`haltpoint queue report: ${line}\n`));
    let suite: SuiteRecord | undefined;
    let lost: HeldRun[] = [];
    for (;;) {
      const text = await redis.get(keys.suite);
      if (text !== null) {
        suite ??= decodeSuite(text, address.shown);
        const stop = decodeStop(await redis.get(keys.stop));
        const c = await queue.getJobCounts("wait", "prioritized", "delayed", "active", "completed", "failed");
        // The host that made the suite record adds its runs next: until it has, none waiting is not the end.
        const filled = (await redis.get(keys.filled)) !== null;
        const waiting = filled ? (c.wait ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) : suite.runs;
        if ((c.active ?? 0) === 0 && (waiting === 0 || stop)) break;
        // Work is left: is a host alive to do it? (A dead host's runs stay active until a live host's check moves them.)
        const verdict = await watch.check(waiting, Boolean(stop));
        if (verdict) {
          lost = verdict.lost;
          if (verdict.gaveUp) {
            const record: StopRecord = { stop: { kind: "hosts-gone", hosts: verdict.gone, waitedMs: watch.waitMs }, host: REPORT_HOST };
            // No host may start a run after the report is written: the suite is closed (a stop already set stands).
            await redis.set(keys.stop, JSON.stringify(record), "NX");
            await queue.pause();
            gaveUp = verdict;
          }
          break;
        }
        say(`waiting for ${address.shown}: ${(c.completed ?? 0) + (c.failed ?? 0)} of ${suite.runs} runs done, ${c.active ?? 0} running, ${waiting} waiting${stop ? ` (stopped: ${stopText(stop.stop)})` : ""}`);
      } else say(`waiting for a host to make ${address.shown}`);
      if (Date.now() > end) throw new UsageError(`${address.shown}: still not done after ${Math.round((o.waitMs ?? 0) / 1000)} s (${said.replace(`waiting for ${address.shown}: `, "")})`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const files = await collect(redis, queue, address, suite!, lost);
    for (const line of handovers(files.records, await redis.hgetall(queueKeys(address.name).gone))) out.write(`${line}\n`);
    const hosts = [...new Set(files.records.map((r) => r.host))];
    const status = await reportMerged(files.reports, {
      json: o.json,
      junit: o.junit,
      html: o.html,
      flakyFails: suite!.flakyFails,
      passWithNoTests: suite!.passWithNoTests,
      out,
      what: `haltpoint queue report: ${address.shown}, ${hosts.length} host${hosts.length === 1 ? "" : "s"} (${hosts.join(", ")})`,
    });
    if (!gaveUp) return status;
    // The suite did not finish: never a pass, whatever ran.
    const notRun = files.reports.reduce((n, f) => n + f.report.tests.reduce((m, t) => m + t.notRun.length, 0), 0);
    out.write(`haltpoint queue report: gave up on ${address.shown}: no host alive for ${Math.round(watch.waitMs / 1000)} s (--host-wait); ${gaveUp.gone.length ? `${lost.length} run${lost.length === 1 ? "" : "s"} lost with host ${gaveUp.gone.join(", ")}, ` : ""}${notRun} not run: the suite did not finish\n`);
    return status === 0 ? 1 : status;
  } finally {
    await queue.close().catch((e: Error) => out.write(`haltpoint queue report: closing the queue: ${e.message}\n`));
    redis.disconnect();
  }
}

/**
 * Lines saying which runs were handed over from a dead host or lost with it, and where
 * bundles are. `howGone`: hosts seen dead by their connection (host-presence.ts); the others'
 * lease expired.
 */
function handovers(records: ResultRecord[], howGone: Record<string, string>): string[] {
  const lines: string[] = [];
  for (const r of records) {
    const lost = r.run?.failure?.kind === "hosts-lost";
    const how = (h: string) => howGone[h] ?? "lease expired";
    const died = r.lostOn.length === 1 ? `host ${r.lostOn[0]} died holding it (${how(r.lostOn[0]!)})` : `hosts ${r.lostOn.map((h) => `${h} (${how(h)})`).join(", then ")} died holding it`;
    if (r.lostOn.length) lines.push(`${r.key}: ${died}; ${r.notRun ? "not run after that (the suite stopped)" : lost ? "no host ran it after that: lost (a failed run)" : `run on ${r.host}`}`);
    for (const b of r.bundles) lines.push(`${r.key}: bundle on host ${r.host}: ${b}`);
  }
  return lines;
}

/** A run every host that took it died holding: a failed run, naming the hosts. */
function lostRecord(p: { key: string; test: string; index: number }, hosts: string[], at: string, why: string, logDir: string): ResultRecord {
  const cause = { kind: "hosts-lost" as const, hosts };
  const failure = { ...cause, message: `${causeText(cause)} (${why})` };
  return {
    format: "haltpoint-queue",
    version: 1,
    host: hosts.at(-1) ?? "?",
    key: p.key,
    test: p.test,
    index: p.index,
    lostOn: hosts,
    bundles: [],
    run: { run: p.index, key: p.key, outcome: "failed", startedAt: at, durationMs: 0, reason: failure.message, failure, logDir, attempts: [{ attempt: 1, outcome: "failed", startedAt: at, durationMs: 0, reason: failure.message, failure, logDir, lostHosts: hosts }] },
  };
}

/**
 * One JSON report per host (its runs), the runs never run in the first. `lost`: runs held
 * by hosts that are gone, with no host left to run them (read before the finished ones: a
 * run that finished meanwhile counts as finished, once).
 */
async function collect(redis: Redis, queue: Queue, address: QueueAddress, suite: SuiteRecord, lost: HeldRun[]): Promise<{ reports: ReportFile[]; records: ResultRecord[] }> {
  const keys = queueKeys(address.name);
  const records: ResultRecord[] = [];
  const notRun: { test: string; index: number }[] = [];
  const lostJobs = lost.length ? (await queue.getJobs(["active"], 0, -1)).filter((j) => lost.some((l) => l.jobId === String(j.id))) : [];
  for (const job of await queue.getJobs(["completed"], 0, -1)) records.push(checkResult(job.returnvalue, String(job.id)));
  const holders = await redis.hgetall(keys.holders);
  const hostFacts = new Map(Object.entries(await redis.hgetall(keys.hosts)).map(([h, t]) => [h, decodeHost(t)]));
  // What a lost run logged before its host died is on that host, under its log dir.
  const logsOn = (hosts: string[]): string => {
    const h = hosts.at(-1);
    const facts = h === undefined ? undefined : hostFacts.get(h);
    return facts ? `${h}:${facts.logDir}` : "";
  };
  for (const job of await queue.getJobs(["failed"], 0, -1)) {
    // Only a run whose hosts kept dying fails in BullMQ (BullMQ's stalled limit): it is a failed run here.
    const p = checkPayload(job.data, String(job.id));
    const hosts = JSON.parse(holders[String(job.id)] ?? "[]") as string[];
    records.push(lostRecord(p, hosts, new Date(job.processedOn ?? job.timestamp).toISOString(), job.failedReason, logsOn(hosts)));
  }
  for (const job of lostJobs) {
    const p = checkPayload(job.data, String(job.id));
    if (records.some((r) => r.key === p.key)) continue;
    const hosts = lost.find((l) => l.jobId === String(job.id))!.hosts;
    records.push(lostRecord(p, hosts, new Date(job.processedOn ?? job.timestamp).toISOString(), "no host was left to run it", logsOn(hosts)));
  }
  for (const job of await queue.getJobs(["wait", "prioritized", "delayed"], 0, -1)) {
    const p = checkPayload(job.data, String(job.id));
    if (!records.some((r) => r.key === p.key)) notRun.push({ test: p.test, index: p.index });
  }
  for (const r of records) if (r.notRun) notRun.push({ test: r.test, index: r.index });
  const stop = decodeStop(await redis.get(keys.stop));
  const byHost = new Map<string, ResultRecord[]>();
  for (const r of records) if (!r.notRun) byHost.set(r.host, [...(byHost.get(r.host) ?? []), r]);
  if (!byHost.size) byHost.set(suite.createdBy, []);
  const reports: ReportFile[] = [];
  for (const [host, rs] of byHost) {
    const first = reports.length === 0;
    const facts = hostFacts.get(host);
    const tests: JsonTest[] = suite.tests.map((t) => ({
      name: t.name,
      file: t.file,
      retries: t.retries,
      runs: rs.filter((r) => r.test === t.name).map((r) => r.run!),
      notRun: first ? notRun.filter((n) => n.test === t.name).map((n) => n.index) : [],
      stats: EMPTY_STATS,
    }));
    const starts = rs.map((r) => Date.parse(r.run!.startedAt));
    const startedAt = facts?.startedAt ?? (starts.length ? Math.min(...starts) : suite.createdAt);
    const ends = rs.map((r) => Date.parse(r.run!.startedAt) + r.run!.durationMs);
    const report: JsonReport = {
      format: JSON_REPORT_FORMAT,
      version: JSON_REPORT_VERSION,
      startedAt: new Date(startedAt).toISOString(),
      durationMs: Math.max(0, (ends.length ? Math.max(...ends) : startedAt) - startedAt),
      interrupted: false,
      stoppedBy: first && stop ? { ...stop.stop, message: stopText(stop.stop) } : null,
      exitStatus: 0,
      flakyFails: suite.flakyFails,
      ...(suite.passWithNoTests ? { passWithNoTests: true } : {}),
      retries: suite.retries,
      shard: null,
      jobs: facts?.jobs ?? 0,
      logDir: facts ? `${host}:${facts.logDir}` : host,
      summary: { runs: rs.length, passed: 0, flaky: 0, failed: 0, notRun: 0, loadErrors: 0 },
      tests,
      loadErrors: [],
    };
    reports.push({ file: `host ${host}`, report });
  }
  return { reports, records };
}
