// `queue report`'s watch over the hosts while work is left. A host whose heartbeat expired
// while it held runs is gone (one line names it and its runs). With a host alive, that
// host's BullMQ stalled-job check hands the runs over when their lease expires, and the
// report waits. With no host alive for --host-wait (the only host was killed, every host
// died), or with the suite stopped (no host would run them again), waiting is over: the
// runs the gone hosts held are lost, the rest not run. The report never waits forever
// for a host that is not there.
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { QueueAddress } from "./address.ts";
import { aliveHosts, heldRuns, type HeldRun } from "./host-liveness.ts";

/** How long `queue report` waits for a host when runs are left and none is alive. */
export const DEFAULT_HOST_WAIT_MS = 60_000;

export interface HostVerdict {
  /** Runs held by hosts that are gone: reported lost. */
  lost: HeldRun[];
  /** The hosts that died holding them. */
  gone: string[];
  /** No host was alive for the whole wait (else: the suite was stopped and only gone hosts' runs were left). */
  gaveUp: boolean;
}

export class HostWatch {
  private readonly told = new Set<string>();
  private noHostSince: number | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly queue: Queue,
    private readonly address: QueueAddress,
    readonly waitMs: number,
    private readonly say: (line: string) => void,
  ) {}

  /** Look once; a verdict when waiting is over. */
  async check(waiting: number, stopped: boolean): Promise<HostVerdict | undefined> {
    const [alive, held] = await Promise.all([aliveHosts(this.redis, this.address.name), heldRuns(this.redis, this.queue, this.address.name)]);
    // A run whose holder is not known yet (taken this instant) is orphaned only when no host is alive.
    const orphans = held.filter((h) => (h.hosts.length ? !alive.has(h.hosts.at(-1)!) : !alive.size));
    const gone = [...new Set(orphans.flatMap((h) => (h.hosts.length ? [h.hosts.at(-1)!] : [])))];
    const waitS = Math.round(this.waitMs / 1000);
    for (const host of gone) {
      if (this.told.has(host)) continue;
      this.told.add(host);
      const runs = orphans.filter((h) => h.hosts.at(-1) === host).map((h) => h.key);
      const them = runs.length === 1 ? "it" : "them";
      const next = stopped
        ? `the suite is stopped: no host runs ${them} again, reported lost`
        : alive.size
          ? `a host alive (${[...alive].sort().join(", ")}) takes ${them} over when the lease expires`
          : `no host is alive to take ${them} over: waiting up to ${waitS} s for one (--host-wait)`;
      this.say(`host ${host} is gone (its heartbeat expired) holding ${runs.join(", ")}: ${next}`);
    }
    if (stopped && orphans.length && orphans.length === held.length) return { lost: orphans, gone, gaveUp: false };
    if (alive.size) {
      this.noHostSince = undefined;
      return undefined;
    }
    if (this.noHostSince === undefined) {
      this.noHostSince = Date.now();
      if (!gone.length) this.say(`no host is alive and ${waiting} run${waiting === 1 ? " is" : "s are"} waiting: waiting up to ${waitS} s for a host (--host-wait)`);
    }
    if (Date.now() - this.noHostSince < this.waitMs) return undefined;
    return { lost: orphans, gone, gaveUp: true };
  }
}
