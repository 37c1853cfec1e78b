// Which hosts of a queue are alive, and which runs the gone ones held. Each host keeps a key
// that expires after its lease (`haltpoint-fleet:NAME:alive:HOST`), renewed every third of
// the lease while its process lives and deleted when it leaves. A host that is killed
// (SIGKILL, a machine lost) stops renewing it: the key expires as the BullMQ lock on its
// runs does, so `queue report` can tell "a host is running it" from "the host holding it is
// gone" with Redis's clock alone (hosts' clocks may differ). BullMQ's own stalled-job check
// runs in workers only: with no host alive, nothing would ever move a dead host's run.
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { checkPayload, queueKeys } from "./format.ts";

/** A host's heartbeat: the alive key, renewed while this process lives. */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private beating = false;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly leaseMs: number,
    private readonly onError: (e: Error) => void,
  ) {}

  async start(): Promise<void> {
    await this.beat();
    this.beating = true;
    this.timer = setInterval(() => void this.beat().catch(this.onError), Math.max(100, Math.round(this.leaseMs / 3)));
  }

  private async beat(): Promise<void> {
    await this.redis.set(this.key, String(this.leaseMs), "PX", this.leaseMs);
  }

  /** Stop renewing; `leave`: delete the key (this host left, it did not die). */
  async stop(leave: boolean): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (leave && this.beating) await this.redis.del(this.key);
    this.beating = false;
  }
}

/** The hosts whose alive key has not expired. */
export async function aliveHosts(redis: Redis, name: string): Promise<Set<string>> {
  const prefix = queueKeys(name).alive("");
  const hosts = new Set<string>();
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`, "COUNT", 1000);
    for (const k of keys) hosts.add(k.slice(prefix.length));
    cursor = next;
  } while (cursor !== "0");
  return hosts;
}

/** A run a host holds now (a BullMQ active job), and every host that took it so far. */
export interface HeldRun {
  jobId: string;
  key: string;
  /** The hosts that took it, in order: the last one holds it. */
  hosts: string[];
}

/** The runs held now, by the host holding each (the last host that took it). */
export async function heldRuns(redis: Redis, queue: Queue, name: string): Promise<HeldRun[]> {
  const jobs = await queue.getJobs(["active"], 0, -1);
  if (!jobs.length) return [];
  const holders = await redis.hgetall(queueKeys(name).holders);
  return jobs.map((j) => {
    const id = String(j.id);
    return { jobId: id, key: checkPayload(j.data, id).key, hosts: JSON.parse(holders[id] ?? "[]") as string[] };
  });
}
