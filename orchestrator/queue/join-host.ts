// `haltpoint run --queue …`: make this host one of the queue's hosts — its fingerprint,
// the suite record it would make, the jobs in their order — or refuse in one line.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, relative } from "node:path";
import { UsageError } from "../selection/discovery.ts";
import type { PlannedRun, PlannedTest } from "../selection/plan.ts";
import { durationsFromReports } from "../selection/shard-by-duration.ts";
import { packageFile } from "../../package-root.ts";
import { parseQueueAddress } from "./address.ts";
import { suiteFingerprint } from "./fingerprint.ts";
import { QUEUE_FORMAT, QUEUE_FORMAT_VERSION, type SuiteRecord } from "./format.ts";
import { QueueHost } from "./host-worker.ts";
import type { AttemptLines } from "../reporters/attempt-lines.ts";
import { QueueRefusal, jobOrder } from "./producer.ts";
import { bestEffort, stderrTeardownLog } from "../../common/teardown.ts";

export interface JoinOptions {
  queue: string;
  host?: string;
  leaseSeconds: number;
  jobs: number;
  logDir: string;
  repeat: number;
  retries?: number;
  untilFail: boolean;
  maxFail?: number;
  flakyFails: boolean;
  passWithNoTests: boolean;
  durations?: string[];
  /** The run's shared output lines (orchestrator/reporters/attempt-lines.ts). */
  lines: AttemptLines;
}

/** This host's default name: the machine's, and the process (several hosts may share a machine). */
export function defaultHostName(): string {
  return `${hostname()}-${process.pid}`;
}

export async function joinAsHost(o: JoinOptions, tests: PlannedTest[], runs: PlannedRun[], say: (line: string) => void): Promise<QueueHost> {
  const address = parseQueueAddress(o.queue);
  const host = o.host ?? defaultHostName();
  const version = (JSON.parse(readFileSync(packageFile("package.json"), "utf8")) as { version: string }).version;
  const fingerprint = await suiteFingerprint(version, tests, { repeat: o.repeat, retries: o.retries, flakyFails: o.flakyFails, maxFail: o.maxFail ?? (o.untilFail ? 1 : undefined) });
  const ours: SuiteRecord = {
    format: QUEUE_FORMAT,
    version: QUEUE_FORMAT_VERSION,
    fingerprint,
    createdBy: host,
    createdAt: Date.now(),
    tests: tests.map((t) => ({ name: t.name, file: relative(process.cwd(), t.file), retries: t.retries ?? 0 })),
    runs: runs.length,
    flakyFails: o.flakyFails,
    passWithNoTests: o.passWithNoTests,
    retries: o.retries ?? null,
    maxFail: o.maxFail ?? (o.untilFail ? 1 : null),
  };
  let durations = new Map<string, number>();
  if (o.durations?.length) {
    const { readReport } = await import("../commands/merge.ts");
    durations = durationsFromReports(await Promise.all(o.durations.map(async (f) => (await readReport(f)).report)));
  }
  const qh = new QueueHost({
    address,
    host,
    jobs: o.jobs,
    leaseMs: o.leaseSeconds * 1000,
    logDir: o.logDir,
    localResults: join(o.logDir, "queue-results.jsonl"),
    untilFail: o.untilFail,
    ...(o.maxFail !== undefined ? { maxFail: o.maxFail } : {}),
    flakyFails: o.flakyFails,
    lines: o.lines,
    say,
  });
  try {
    await qh.connect();
    const { suite, made } = await qh.join(ours, jobOrder(runs, durations), runs);
    say(`queue ${address.shown}: host ${host} ${made ? `made the queue: ${suite.runs} runs, longest expected first` : `joined the queue of ${suite.runs} runs made by ${suite.createdBy}`}; lease ${o.leaseSeconds} s`);
  } catch (e) {
    await bestEffort(stderrTeardownLog, "closing the queue connection after the refusal", qh.close());
    throw new UsageError(e instanceof QueueRefusal ? e.message : (e as Error).message);
  }
  return qh;
}
