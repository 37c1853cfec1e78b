// `--shard K/N`: a deterministic slice of the suite for one CI machine of N. A test's shard
// depends on its name and N only (FNV-1a hash of the name, bits mixed with murmur3's
// finaliser so that names differing in one character spread evenly, mod N): every machine computes
// the same partition without talking to the others, and adding or removing a test moves
// no other test to another shard.

export interface Shard {
  /** 1-based. */
  index: number;
  total: number;
}

/** Parse `K/N` (1 ≤ K ≤ N); throws an Error with a one-line message. */
export function parseShard(s: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(s);
  const index = m ? Number(m[1]) : NaN;
  const total = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(index) || !Number.isSafeInteger(total) || total < 1 || index < 1 || index > total) {
    throw new Error(`--shard takes K/N with 1 ≤ K ≤ N (e.g. 2/4), got '${s}'`);
  }
  return { index, total };
}

/** 32-bit FNV-1a over the UTF-8 bytes of `s`. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, "utf8")) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** murmur3's fmix32: every input bit affects every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The stable hash a shard is chosen by. */
export function testHash(name: string): number {
  return fmix32(fnv1a32(name));
}

/** Which shard (1-based) of `total` the test named `name` belongs to. */
export function shardOf(name: string, total: number): number {
  return (testHash(name) % total) + 1;
}

/** The tests of one shard, in their original order. */
export function inShard<T extends { name: string }>(tests: T[], shard: Shard | undefined): T[] {
  if (!shard) return tests;
  return tests.filter((t) => shardOf(t.name, shard.total) === shard.index);
}

export function formatShard(s: Shard): string {
  return `${s.index}/${s.total}`;
}
