// One host of a queue (`haltpoint run --queue redis://…`): a BullMQ Worker takes the next
// run when this host has room, hands it to the scheduler (this object is the scheduler's
// run source) and, when the run ends (this object is also a reporter), stores its result
// record as the job's return value. BullMQ's job lock is the lease: it is renewed while the
// run goes on, and if this host dies the lock expires and another host's stalled-job check
// gives the run to a host that is alive; the record then names the hosts that died.
// --until-fail/--max-fail count failures across hosts (one Redis counter) and stop every
// host: the queue is paused, each host starts nothing more, runs in flight finish.
import { appendFileSync } from "node:fs";
import { Queue, UnrecoverableError, Worker, type Job } from "bullmq";
import { Redis } from "ioredis";
import type { Notice, StopReason } from "../../common/failure-kinds.ts";
import type { PlannedRun } from "../selection/plan.ts";
import { failsSuite, type RunResult } from "../results.ts";
import type { ReportEvent, Reporter } from "../report-events.ts";
import type { AttemptLines } from "../reporters/attempt-lines.ts";
import { stopText } from "../reporters/failure-text.ts";
import { buildJsonReport, type JsonRun } from "../reporters/json-report.ts";
import { redisOptions, type QueueAddress } from "./address.ts";
import { BULL_PREFIX, REPORT_HOST, QUEUE_FORMAT, QUEUE_FORMAT_VERSION, checkPayload, decodeStop, queueKeys, type HostRecord, type JobPayload, type ResultRecord, type StopRecord, type SuiteRecord } from "./format.ts";
import { Heartbeat } from "./host-liveness.ts";
import { CONNECTION_CLOSED, GoneHostWatch, Presence } from "./host-presence.ts";
import { joinQueue } from "./producer.ts";

export interface QueueHostOptions {
  address: QueueAddress;
  /** This host's name in the reports (--queue-host; default hostname-pid). */
  host: string;
  jobs: number;
  /** How long a run stays leased to a host that stopped renewing it (BullMQ's lockDuration). */
  leaseMs: number;
  logDir: string;
  /** Where each result record is appended as the run ends (JSON lines). */
  localResults: string;
  untilFail: boolean;
  maxFail?: number;
  flakyFails: boolean;
  /** How long an unreachable Redis is retried before this host gives up. */
  giveUpMs?: number;
  /** The run's shared output lines (a reporter before this one): a failed attempt's tail goes into its record. */
  lines: AttemptLines;
  /** A line for the user (a dead host's runs handed back to the queue). */
  say?: (line: string) => void;
}

/** A run whose hosts died this many times holding it is not handed out again: it fails, naming them. */
export const MAX_HOSTS_LOST = 3;

/** A run taken from the queue and not yet ended. */
interface Held {
  job: Job;
  payload: JobPayload;
  lostOn: string[];
  settle: (record: ResultRecord) => void;
}

export class QueueHost implements Reporter, AsyncIterable<PlannedRun> {
  private readonly keys;
  private readonly redis: Redis;
  private readonly queue: Queue;
  private worker: Worker | undefined;
  private runs = new Map<string, PlannedRun>();
  /** Taken from the queue, waiting for a slot here. */
  private readonly buffer: Held[] = [];
  private readonly held = new Map<string, Held>();
  private readonly bundles = new Map<string, string[]>();
  private wake: (() => void) | undefined;
  /** Jobs the worker handed over that are not yet in the buffer. */
  private taking = 0;
  private draining = false;
  private looking = false;
  private ended = false;
  private watch: NodeJS.Timeout | undefined;
  /** Why this host stopped taking runs (another host's --until-fail, Ctrl-C), if it did. */
  stopped: StopRecord | undefined;
  /** Redis went away: the one line to print. */
  fatal: string | undefined;
  /** Runs this host completed and stored. */
  stored = 0;
  /** Called when the suite stops (--until-fail/--max-fail anywhere): admit nothing more here. */
  onStop: (stop: StopReason) => void = () => {};
  private lastError: string | undefined;
  private readonly heartbeat: Heartbeat;
  private readonly presence: Presence;
  private readonly goneHosts: GoneHostWatch;

  constructor(private readonly o: QueueHostOptions) {
    this.keys = queueKeys(o.address.name);
    const opts = redisOptions(o.address, o.giveUpMs);
    this.redis = new Redis({ ...opts, lazyConnect: true });
    this.redis.on("error", (e: Error) => (this.lastError = e.message));
    this.redis.on("end", () => this.lose());
    this.queue = new Queue(o.address.name, { connection: opts, prefix: BULL_PREFIX });
    this.queue.on("error", (e: Error) => (this.lastError = e.message));
    this.heartbeat = new Heartbeat(this.redis, this.keys.alive(o.host), o.leaseMs, (e) => (this.lastError = e.message));
    this.presence = new Presence(opts, o.address.name, o.host, (e) => (this.lastError = e.message));
    this.goneHosts = new GoneHostWatch(this.redis, this.queue, o.address.name, o.host, (line) => this.o.say?.(line));
  }

  /** Why another host (or `queue report`) stopped the suite, if it did: this host then fails too. */
  get stoppedElsewhere(): StopRecord | undefined {
    return this.stopped && this.stopped.host !== this.o.host ? this.stopped : undefined;
  }

  /** The line a host stopped by another prints (it exits 1: the suite it is part of failed). */
  stoppedElsewhereLine(): string | undefined {
    const s = this.stoppedElsewhere;
    if (!s) return undefined;
    const why = stopText(s.stop).replace(/; starting no more runs$/, "");
    return `queue ${this.o.address.shown}: this host stopped taking runs because ${s.host === REPORT_HOST ? "queue report" : `host ${s.host}`} stopped the suite (${why}): the suite failed`;
  }

  /** Reach Redis: one line if it cannot be reached. */
  async connect(): Promise<void> {
    try {
      await this.redis.connect();
      await this.redis.ping();
    } catch (e) {
      throw new Error(`${this.o.address.shown}: cannot reach Redis: ${this.lastError ?? (e as Error).message}`);
    }
    // Alive from here on (making the queue may take a while): `queue report` waits for a host alive.
    await this.heartbeat.start();
    // Present before this host takes a run: a run it holds is never without its channel.
    await this.presence.start();
  }

  /** Make or join the queue's suite; throws QueueRefusal. */
  async join(ours: SuiteRecord, jobs: JobPayload[], runs: PlannedRun[]): Promise<{ suite: SuiteRecord; made: boolean }> {
    this.runs = new Map(runs.map((r) => [r.key, r]));
    const joined = await joinQueue(this.redis, this.queue, this.o.address.name, this.o.address.shown, ours, jobs);
    const me: HostRecord = { host: this.o.host, startedAt: Date.now(), jobs: this.o.jobs, logDir: this.o.logDir };
    await this.redis.hset(this.keys.hosts, this.o.host, JSON.stringify(me));
    return joined;
  }

  /** Start taking runs. */
  start(): void {
    this.worker = new Worker(this.o.address.name, (job, token) => this.process(job, token), {
      connection: redisOptions(this.o.address, this.o.giveUpMs),
      prefix: BULL_PREFIX,
      concurrency: this.o.jobs,
      lockDuration: this.o.leaseMs,
      stalledInterval: Math.max(500, Math.round(this.o.leaseMs / 2)),
      // A run whose hosts keep dying fails after 3 leases lost (the report names the hosts).
      maxStalledCount: 2,
      drainDelay: 1,
    });
    this.worker.on("error", (e: Error) => (this.lastError = e.message));
    // The end of the work is seen as the last run is stored, not at the next look.
    this.worker.on("completed", () => void this.look());
    this.watch = setInterval(() => void this.look(), 200);
    // A host that joins a queue whose work is done (a replacement that came late) leaves at once.
    void this.look();
  }

  private async process(job: Job, token: string | undefined): Promise<ResultRecord> {
    this.taking++;
    try {
      return await this.take(job, token);
    } finally {
      this.taking--;
    }
  }

  private async take(job: Job, token: string | undefined): Promise<ResultRecord> {
    const payload = checkPayload(job.data, String(job.id));
    if (!this.runs.has(payload.key)) throw new UnrecoverableError(`${payload.key} is not in this host's suite`);
    const before = (await this.redis.hget(this.keys.holders, String(job.id))) ?? "[]";
    // Whoever took this run before and did not finish it died holding it (its lease expired).
    const lostOn = JSON.parse(before) as string[];
    // A run that takes its hosts down with it (it exhausts the machine, say) would go round forever.
    if (lostOn.length >= MAX_HOSTS_LOST) throw new UnrecoverableError(`${lostOn.length} hosts died holding it`);
    // This host holds it now, under this lock: if this host dies, the hosts alive hand it back under this lock only.
    const holding = this.redis.multi().hset(this.keys.holders, String(job.id), JSON.stringify([...lostOn, this.o.host]));
    await (token ? holding.hset(this.keys.locks, String(job.id), token) : holding.hdel(this.keys.locks, String(job.id))).exec();
    // Only a stop ends this host while the worker still takes jobs (the end of the work pauses it first).
    if (this.stopped || this.fatal) return this.notRun(payload, lostOn);
    return new Promise<ResultRecord>((settle) => {
      this.buffer.push({ job, payload, lostOn, settle });
      this.wake?.();
    });
  }

  private notRun(p: JobPayload, lostOn: string[]): ResultRecord {
    return { format: QUEUE_FORMAT, version: QUEUE_FORMAT_VERSION, host: this.o.host, key: p.key, test: p.test, index: p.index, notRun: true, lostOn, bundles: [] };
  }

  [Symbol.asyncIterator](): AsyncIterator<PlannedRun> {
    return {
      next: async (): Promise<IteratorResult<PlannedRun>> => {
        for (;;) {
          const h = this.buffer.shift();
          if (h) {
            this.held.set(h.payload.key, h);
            return { done: false, value: this.runs.get(h.payload.key)! };
          }
          if (this.ended) return { done: true, value: undefined };
          await new Promise<void>((r) => (this.wake = r));
        }
      },
    };
  }

  /**
   * No more runs for this host: the scheduler's source ends once it has taken the runs
   * already here — unless the suite stopped: runs taken but not started are then not run.
   */
  private end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.stopped || this.fatal) for (const h of this.buffer.splice(0)) h.settle(this.notRun(h.payload, h.lostOn));
    this.wake?.();
  }

  /** The work is done (none waiting, none held elsewhere): take no more jobs, then end. */
  private async drained(): Promise<void> {
    this.draining = true;
    await this.worker?.pause(true);
    // A job the worker took before it paused is run here, not dropped.
    while (this.taking > 0) await new Promise((r) => setTimeout(r, 20));
    this.end();
  }

  /** Every 200 ms: a stop from another host; the end of the work. */
  private async look(): Promise<void> {
    if (this.fatal || this.ended || this.draining || this.looking) return;
    this.looking = true;
    try {
      const stop = decodeStop(await this.redis.get(this.keys.stop));
      if (stop) return this.stopHere(stop);
      for (const h of await this.goneHosts.check()) {
        this.o.say?.(`queue ${this.o.address.shown}: host ${h.host} is gone (${CONNECTION_CLOSED}) holding ${h.runs.join(", ")}: back in the queue, the next free host runs ${h.runs.length === 1 ? "it" : "them"}`);
      }
      const c = await this.queue.getJobCounts("wait", "prioritized", "delayed", "active");
      const waiting = (c.wait ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0);
      // Runs other hosts hold may come back (their host dies): stay until none is held elsewhere.
      if (waiting === 0 && (c.active ?? 0) <= this.held.size + this.buffer.length + this.taking) await this.drained();
    } catch (e) {
      this.lastError = (e as Error).message;
    } finally {
      this.looking = false;
    }
  }

  private stopHere(stop: StopRecord): void {
    if (this.stopped) return;
    this.stopped = stop;
    this.onStop(stop.stop);
    this.end();
  }

  /** Stop every host: the queue pauses, the stop record says why (the first one stands). */
  private async publishStop(stop: StopReason): Promise<void> {
    const record: StopRecord = { stop, host: this.o.host };
    await this.redis.set(this.keys.stop, JSON.stringify(record), "NX");
    await this.queue.pause();
    this.stopHere(decodeStop(await this.redis.get(this.keys.stop)) ?? record);
  }

  private lose(): void {
    if (this.fatal) return;
    this.fatal = `${this.o.address.shown}: Redis went away (${this.lastError ?? "connection closed"}); this host stopped taking runs — the runs it finished (${this.stored}) are in ${this.o.localResults}`;
    this.onStop({ kind: "interrupted" });
    this.end();
  }

  report(e: ReportEvent): void {
    if (e.kind === "worker-event") {
      if (e.event.t === "bundle" && !e.event.error) {
        const l = this.bundles.get(e.run.key) ?? [];
        l.push(e.event.dir);
        this.bundles.set(e.run.key, l);
      }
    } else if (e.kind === "notice") this.onNotice(e.notice);
    else if (e.kind === "run-end") this.onRunEnd(e.result);
  }

  private onNotice(n: Notice): void {
    // This host's scheduler stopped (--until-fail, --max-fail here): every host stops.
    if (n.kind === "stopped" && !this.fatal) void this.publishStop(n.stop).catch((e: Error) => (this.lastError = e.message));
    if (n.kind === "signal") this.end();
  }

  private onRunEnd(r: RunResult): void {
    const h = this.held.get(r.run.key);
    if (!h) return;
    this.held.delete(r.run.key);
    const run = jsonRunOf(r, this.o.lines, this.o.host, h.lostOn);
    const record: ResultRecord = { format: QUEUE_FORMAT, version: QUEUE_FORMAT_VERSION, host: this.o.host, key: r.run.key, test: r.run.test.name, index: r.run.index, run, lostOn: h.lostOn, bundles: this.bundles.get(r.run.key) ?? [] };
    // Written here first: a Redis that goes away loses no finished run.
    try {
      appendFileSync(this.o.localResults, `${JSON.stringify(record)}\n`, { mode: 0o600 });
    } catch (e) {
      this.lastError = `${this.o.localResults}: ${(e as Error).message}`;
    }
    this.stored++;
    h.settle(record);
    if (!this.fatal && failsSuite(r, this.o.flakyFails)) void this.countFailure(r);
  }

  /** --max-fail N across hosts: the Nth failed run anywhere stops every host. */
  private async countFailure(r: RunResult): Promise<void> {
    const limit = this.o.maxFail ?? (this.o.untilFail ? 1 : undefined);
    if (limit === undefined) return;
    const n = await this.redis.incr(this.keys.failures).catch(() => 0);
    if (n < limit) return;
    const flaky = r.outcome === "flaky";
    await this.publishStop(this.o.maxFail !== undefined ? { kind: "max-fail", limit, run: r.run.key, flaky } : { kind: "until-fail", run: r.run.key, flaky }).catch((e: Error) => (this.lastError = e.message));
  }

  /** Let go: the worker finishes storing records, the connections close. */
  async close(): Promise<void> {
    this.end();
    if (this.watch) clearInterval(this.watch);
    // Whatever was taken and not run (Ctrl-C, a stop) is stored as not run: BullMQ then lets go.
    for (const h of [...this.held.values(), ...this.buffer.splice(0)]) h.settle(this.notRun(h.payload, h.lostOn));
    this.held.clear();
    const quick = (p: Promise<unknown>, what: string): Promise<boolean> =>
      Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000).unref())]).catch((e: Error) => {
        console.error(`haltpoint: queue: closing the ${what}: ${e.message}`);
        return false;
      });
    if (this.worker && !(await quick(this.worker.close(Boolean(this.fatal)), "worker"))) {
      console.error("haltpoint: queue: the worker did not close within 5 s: closing it without waiting");
      await quick(this.worker.close(true), "worker");
    }
    await quick(this.queue.close(), "queue");
    // Leaving is not dying: the heartbeat goes at once (a killed host's expires with its lease).
    await quick(this.heartbeat.stop(!this.fatal), "heartbeat");
    this.presence.stop();
    if (this.fatal) this.redis.disconnect();
    else await quick(this.redis.quit(), "connection");
  }
}

/** A run as the JSON report has it, each attempt naming its host (the first, the hosts that died holding it). */
export function jsonRunOf(r: RunResult, lines: AttemptLines, host: string, lostOn: string[]): JsonRun {
  const report = buildJsonReport({ plan: { tests: [r.run.test], runs: [r.run], loadErrors: [], jobs: 1, logDir: "" }, results: [r], notRun: [], interrupted: false, startedAt: r.startedAt, durationMs: r.durationMs }, lines);
  const run = report.tests[0]!.runs[0]!;
  run.attempts = run.attempts.map((a, i) => ({ ...a, host, ...(i === 0 && lostOn.length ? { lostHosts: lostOn } : {}) }));
  return run;
}
