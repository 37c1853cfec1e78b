// A host that dies is seen at once, not when its lease expires. Each host keeps one Redis
// connection subscribed to its own channel (`haltpoint-fleet:NAME:present:HOST`); when its
// process ends — killed, OOM-killed, a pod evicted — the kernel closes that connection and
// Redis drops the subscription, so `PUBSUB NUMSUB` counts 0 for the host. Hosts that are
// alive look at the hosts holding runs every few hundred ms; one whose channel has had no
// subscriber for GONE_AFTER_MS (a reconnecting client resubscribes well within it) is gone:
// its runs go back to the queue with BullMQ's own `Job.moveToWait`, and the next free host
// takes them. Redis has no ephemeral keys (ZooKeeper's, etcd's leases): a subscription is
// the nearest thing it has. A host that hangs or loses its network keeps its connection (or
// its TCP peer does not know yet): for it the lease (BullMQ's lock, --queue-lease) still
// decides. A run is handed back only under the lock its dead holder took it with
// (`moveToWait(token)` checks the token in one Lua script): when several hosts see the same
// death, one moves it and the others find the lock gone; a run another host has just taken
// (its lease expired meanwhile, or the first host handed it back) holds that host's lock and
// is never moved from under it.
import { Job, type Queue } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import { checkPayload, queueKeys } from "./format.ts";

/** How long a holder's channel must have had no subscriber before the host counts as gone. */
export const GONE_AFTER_MS = 1000;
/** How a host found gone this way is named in reports (`died holding it (…)`). */
export const CONNECTION_CLOSED = "its connection closed";

/** This host's presence: a subscriber connection that lives exactly as long as the process. */
export class Presence {
  private readonly sub: Redis;
  private readonly channel: string;

  constructor(options: RedisOptions, name: string, host: string, onError: (e: Error) => void) {
    this.sub = new Redis({ ...options, lazyConnect: true, connectionName: `haltpoint-presence:${host}` });
    this.sub.on("error", onError);
    this.channel = queueKeys(name).present(host);
  }

  async start(): Promise<void> {
    await this.sub.connect();
    // ioredis subscribes again by itself after a reconnect.
    await this.sub.subscribe(this.channel);
  }

  /** Leave: the channel goes with the connection. */
  stop(): void {
    this.sub.disconnect();
  }
}

/** A host found gone, and the runs handed back to the queue from it. */
export interface HandedBack {
  host: string;
  /** The runs' keys (`test#n`). */
  runs: string[];
}

/** Watches the hosts holding runs; hands a gone host's runs back to the queue. */
export class GoneHostWatch {
  private readonly keys;
  /** Since when each holder's channel has had no subscriber (ms). */
  private readonly absentSince = new Map<string, number>();
  private disabled = false;

  constructor(
    private readonly redis: Redis,
    private readonly queue: Queue,
    name: string,
    /** This host: never judged by itself. */
    private readonly self: string,
    private readonly log: (line: string) => void,
  ) {
    this.keys = queueKeys(name);
  }

  /** Look once: the runs handed back now (usually none). */
  async check(now = Date.now()): Promise<HandedBack[]> {
    if (this.disabled) return [];
    const active = (await this.queue.getRanges(["active"], 0, -1)).map(String);
    if (!active.length) {
      this.absentSince.clear();
      return [];
    }
    const [holders, locks] = await Promise.all([this.redis.hmget(this.keys.holders, ...active), this.redis.hmget(this.keys.locks, ...active)]);
    const heldBy = new Map<string, { jobId: string; token: string }[]>();
    active.forEach((jobId, i) => {
      const host = (JSON.parse(holders[i] ?? "[]") as string[]).at(-1);
      const token = locks[i];
      // A run whose holder has not named itself yet is left to the lease.
      if (host === undefined || host === this.self || !token) return;
      heldBy.set(host, [...(heldBy.get(host) ?? []), { jobId, token }]);
    });
    const hosts = [...heldBy.keys()];
    for (const h of this.absentSince.keys()) if (!heldBy.has(h)) this.absentSince.delete(h);
    if (!hosts.length) return [];
    let counts: (string | number)[];
    try {
      counts = (await this.redis.pubsub("NUMSUB", ...hosts.map((h) => this.keys.present(h)))) as (string | number)[];
    } catch (e) {
      // A Redis that refuses PUBSUB (an ACL): the lease alone decides, as it did before.
      this.disabled = true;
      this.log(`cannot see hosts' connections (PUBSUB NUMSUB: ${(e as Error).message}): a dead host's runs move when its lease expires`);
      return [];
    }
    const handed: HandedBack[] = [];
    for (let i = 0; i < hosts.length; i++) {
      const host = hosts[i]!;
      if (Number(counts[2 * i + 1]) > 0) {
        this.absentSince.delete(host);
        continue;
      }
      const since = this.absentSince.get(host) ?? now;
      this.absentSince.set(host, since);
      if (now - since < GONE_AFTER_MS) continue;
      const runs: string[] = [];
      for (const { jobId, token } of heldBy.get(host)!) {
        const job = await Job.fromId(this.queue, jobId);
        if (!job) continue;
        try {
          await job.moveToWait(token);
        } catch {
          // Not under the dead host's lock any more (another host handed it back or took it): not ours to move.
          continue;
        }
        await this.redis.hset(this.keys.gone, host, CONNECTION_CLOSED);
        runs.push(checkPayload(job.data, jobId).key);
      }
      if (runs.length) handed.push({ host, runs });
    }
    return handed;
  }
}
