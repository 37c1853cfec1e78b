// A queue's address: `redis://[[user]:password@]host:port/NAME` (Valkey speaks the same).
// NAME is the suite run's queue: hosts that give the same address work on one suite.
import type { RedisOptions } from "ioredis";

export interface QueueAddress {
  host: string;
  port: number;
  username?: string;
  password?: string;
  /** The queue's name (one suite run). */
  name: string;
  /** The address without its password, for messages and reports. */
  shown: string;
}

const NAME = /^[A-Za-z0-9._-]{1,100}$/;

/** Parse a queue address; throws an Error with a one-line message naming the flag. */
export function parseQueueAddress(s: string, flag = "--queue"): QueueAddress {
  const bad = (why: string): Error => new Error(`${flag} takes redis://[:PASSWORD@]HOST:PORT/NAME (${why}), got '${s.replace(/\/\/([^@/]*:)[^@/]*@/, "//$1***@")}'`);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw bad("not a URL");
  }
  if (u.protocol !== "redis:") throw bad("the scheme must be redis://");
  if (!u.hostname) throw bad("no host");
  if (!u.port) throw bad("no port");
  const name = decodeURIComponent(u.pathname.replace(/^\//, ""));
  if (!NAME.test(name)) throw bad("NAME: 1 to 100 letters, digits, '.', '_' or '-'");
  if (u.search || u.hash) throw bad("no query or fragment");
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(u.port);
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const auth = username || password ? `${username ?? ""}${password ? ":***" : ""}@` : "";
  return {
    host,
    port,
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    name,
    shown: `redis://${auth}${u.host}/${name}`,
  };
}

/**
 * ioredis options for this address. A Redis that goes away is retried for `giveUpMs`,
 * then every command fails: the host reports the runs it has and ends with one error
 * instead of waiting forever (ioredis's default).
 */
export function redisOptions(a: QueueAddress, giveUpMs = 10_000): RedisOptions {
  const started = new Map<number, number>();
  return {
    host: a.host,
    port: a.port,
    ...(a.username ? { username: a.username } : {}),
    ...(a.password ? { password: a.password } : {}),
    // BullMQ's workers block on Redis: it requires this (commands wait for a reconnect).
    maxRetriesPerRequest: null,
    connectTimeout: Math.min(giveUpMs, 10_000),
    retryStrategy: (times: number) => {
      if (times === 1) started.set(0, Date.now());
      return Date.now() - (started.get(0) ?? Date.now()) > giveUpMs ? null : Math.min(times * 200, 1000);
    },
  };
}
