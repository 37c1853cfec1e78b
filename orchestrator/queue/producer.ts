// Joining a queue: the first host to arrive makes the suite record (SET NX, so exactly
// one host does) and adds every run as a BullMQ job, longest expected first; every other
// host checks its fingerprint against the record and refuses in one line if it differs.
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { PlannedRun } from "../selection/plan.ts";
import { median } from "../selection/shard-by-duration.ts";
import { fingerprintMismatch } from "./fingerprint.ts";
import { QUEUE_FORMAT, QUEUE_FORMAT_VERSION, decodeSuite, queueKeys, type JobPayload, type SuiteRecord } from "./format.ts";

/** The runs as jobs, longest expected first (ties: suite order); unknown tests count as the median. */
export function jobOrder(runs: readonly PlannedRun[], durations: ReadonlyMap<string, number>): JobPayload[] {
  const fallback = median([...new Set(runs.map((r) => r.test.name))].filter((n) => durations.has(n)).map((n) => durations.get(n)!));
  const jobs = runs.map((r, i) => ({ i, job: { key: r.key, test: r.test.name, index: r.index, expectedMs: Math.round(durations.get(r.test.name) ?? fallback) } }));
  jobs.sort((a, b) => b.job.expectedMs - a.job.expectedMs || a.i - b.i);
  return jobs.map((j) => j.job);
}

export class QueueRefusal extends Error {}

/**
 * Make the queue's suite (if this host is first) or check this host fits it. Resolves with
 * the suite record in force and whether this host made it. Throws QueueRefusal (one line).
 */
export async function joinQueue(redis: Redis, queue: Queue, name: string, shown: string, ours: SuiteRecord, jobs: readonly JobPayload[], waitMs = 60_000): Promise<{ suite: SuiteRecord; made: boolean }> {
  const keys = queueKeys(name);
  if ((await redis.set(keys.suite, JSON.stringify(ours), "NX")) === "OK") {
    // Job ids are the queue order: adding twice (a host restarted) adds nothing twice.
    const width = String(jobs.length).length;
    for (let i = 0; i < jobs.length; i += 1000) {
      await queue.addBulk(jobs.slice(i, i + 1000).map((data, j) => ({ name: data.key, data, opts: { jobId: `run-${String(i + j + 1).padStart(width, "0")}`, removeOnComplete: false, removeOnFail: false } })));
    }
    await redis.set(keys.filled, String(jobs.length));
    return { suite: ours, made: true };
  }
  const theirs = decodeSuite(await redis.get(keys.suite), shown);
  if (theirs.format !== QUEUE_FORMAT || theirs.version !== QUEUE_FORMAT_VERSION) throw new QueueRefusal(`${shown}: made by a haltpoint with queue format ${theirs.version}`);
  const why = fingerprintMismatch(theirs.fingerprint, ours.fingerprint);
  if (why) throw new QueueRefusal(`${shown}: this host refuses to join: ${why} (a queue is one suite run: give each run its own NAME)`);
  // The first host may still be adding jobs.
  const end = Date.now() + waitMs;
  while ((await redis.get(keys.filled)) === null) {
    if (Date.now() > end) throw new QueueRefusal(`${shown}: host ${theirs.createdBy} made the queue but added no jobs within ${waitMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { suite: theirs, made: false };
}
