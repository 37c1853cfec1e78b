// How `haltpoint`'s flags read their values: each parser turns a string into a value or
// throws commander's InvalidArgumentError, whose message names the flag (one line, exit 2).
import { InvalidArgumentError } from "commander";
import parseMs from "ms";
import { parseShard } from "./selection/shard.ts";
import { parseShardSpec, type ShardSpec } from "./selection/selection.ts";
import { parseQueueAddress } from "./queue/address.ts";

export function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} takes a positive integer, got '${v}'`);
    return n;
  };
}

export function wholeNumber(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${flag} takes a whole number (0 or more), got '${v}'`);
    return n;
  };
}

/** A factor such as 2 or 1.5, at least `min`. */
export function factor(flag: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+(\.\d+)?$/.test(v) || !Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${flag} takes a number of at least ${min} (e.g. 1.5), got '${v}'`);
    return n;
  };
}

export function shard(v: string): ShardSpec {
  try {
    return parseShardSpec(v, parseShard);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

export function bool(flag: string) {
  return (v: string): boolean => {
    if (/^(true|yes|on|1)$/i.test(v)) return true;
    if (/^(false|no|off|0)$/i.test(v)) return false;
    throw new InvalidArgumentError(`${flag} takes true or false, got '${v}'`);
  };
}

export function port(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < 1 || n > 65535) throw new InvalidArgumentError(`${flag} takes a TCP port (1-65535), got '${v}'`);
    return n;
  };
}

/** "30m", "90s", "1h", "2d" or plain seconds → seconds. */
export function duration(flag: string) {
  return (v: string): number => {
    const ms = /^\d+(\.\d+)?$/.test(v) ? Number(v) * 1000 : parseMs(v as parseMs.StringValue);
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms <= 0) throw new InvalidArgumentError(`${flag} takes a duration such as 30m, 90s or 1h, got '${v}'`);
    return ms / 1000;
  };
}

export function queueAddress(v: string): string {
  try {
    parseQueueAddress(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return v;
}

export function regex(v: string): RegExp {
  try {
    return new RegExp(v);
  } catch (e) {
    throw new InvalidArgumentError(`--filter takes a regular expression: ${(e as Error).message}`);
  }
}
