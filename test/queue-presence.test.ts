// orchestrator/queue/host-presence.ts against a real redis-server and BullMQ: a host whose
// connection closed is seen gone after GONE_AFTER_MS and its runs go back to the queue under
// its own lock only; a host alive is left alone; a run another host has just taken is never
// moved from under it.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { startRedis, type TestRedis } from "./helpers/redis.ts";
import { parseQueueAddress, redisOptions } from "../orchestrator/queue/address.ts";
import { BULL_PREFIX, queueKeys } from "../orchestrator/queue/format.ts";
import { CONNECTION_CLOSED, GONE_AFTER_MS, GoneHostWatch, Presence } from "../orchestrator/queue/host-presence.ts";

let r: TestRedis | undefined;
after(async () => {
  await r?.kill();
});

test("a host whose connection closed is gone after GONE_AFTER_MS: its run goes back to the queue under its lock; an alive host's run and a run taken again stay", async () => {
  r = await startRedis();
  const name = "presence";
  const opts = redisOptions(parseQueueAddress(r.url(name)));
  const keys = queueKeys(name);
  const conn = new Redis({ ...opts, lazyConnect: true });
  await conn.connect();
  const queue = new Queue(name, { connection: opts, prefix: BULL_PREFIX });
  // A worker that takes jobs by hand (no processor): each take is one host's, under its own token.
  const taker = new Worker(name, null, { connection: opts, prefix: BULL_PREFIX, lockDuration: 600_000 });
  const alive = new Presence(opts, name, "alive", (e) => assert.fail(e));
  const dying = new Presence(opts, name, "dying", (e) => assert.fail(e));
  const logged: string[] = [];
  const watch = new GoneHostWatch(conn, queue, name, "watcher", (l) => logged.push(l));
  try {
    await alive.start();
    await dying.start();
    for (const key of ["a#1", "d#1", "t#1"]) await queue.add(key, { key, test: key.split("#")[0], index: 1, expectedMs: 1000 });
    /** Take the next job as `host`, and name it the holder as a queue host does. */
    const take = async (host: string, token: string, lock = token) => {
      const job = await taker.getNextJob(token);
      assert.ok(job);
      await conn.hset(keys.holders, String(job.id), JSON.stringify([host]));
      await conn.hset(keys.locks, String(job.id), lock);
      return job;
    };
    const a = await take("alive", "tok-a");
    const d = await take("dying", "tok-d");
    // "t#1" is in the window where a new host has taken it and not yet named itself: the hashes
    // still name the dead host and its old token, the lock is the new host's.
    const t = await take("dying", "tok-new", "tok-old");
    assert.deepEqual(await watch.check(1000), [], "both hosts present: nothing to do");
    dying.stop();
    const t0 = 10_000;
    assert.deepEqual(await watch.check(t0), [], "an absence is not a death yet");
    assert.deepEqual(await watch.check(t0 + GONE_AFTER_MS - 1), [], "nor just before GONE_AFTER_MS");
    const handed = await watch.check(t0 + GONE_AFTER_MS);
    assert.deepEqual(handed, [{ host: "dying", runs: ["d#1"] }], "the dead host's run under its lock, not the one taken again");
    assert.equal(await d.getState(), "waiting", "back in the queue");
    assert.equal(await a.getState(), "active", "the alive host keeps its run");
    assert.equal(await t.getState(), "active", "the run taken again stays with its new host");
    assert.equal(await conn.hget(keys.gone, "dying"), CONNECTION_CLOSED, "the report can say how the host was found gone");
    assert.deepEqual(await watch.check(t0 + 2 * GONE_AFTER_MS), [], "a second look moves nothing twice");
    // The next free host takes the handed-back run.
    const next = await taker.getNextJob("tok-b");
    assert.equal(next?.id, d.id);
    assert.deepEqual(logged, []);
  } finally {
    alive.stop();
    dying.stop();
    await taker.close(true);
    await queue.close();
    conn.disconnect();
  }
});
