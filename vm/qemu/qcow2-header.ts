// A qcow2 file's header, read by haltpoint before QEMU opens a file it did not write (a bundle's
// disk: hooks/bundles/bundle-format.ts). A qcow2 header can name other files QEMU would open
// as the reviving user: a backing file (any path, or a `json:` pseudo-protocol) and an
// external data file. So a disk from elsewhere must be a plain qcow2 version 3 with exactly the
// backing name expected (or none), no data file, no encryption and no internal snapshots.
// https://gitlab.com/qemu-project/qemu/-/blob/master/docs/interop/qcow2.txt

import { closeSync, openSync, readSync } from "node:fs";

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
/** Incompatible feature bits haltpoint's own disks may have: bit 3, the compression type (zstd). */
const ALLOWED_INCOMPATIBLE = 1n << 3n;
const EXT_END = 0;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_DATA_FILE = 0x44415441;
const EXT_ENCRYPTION = 0x0537be77;
/** Read this much: the header, its extensions and a backing name (at most 1023 bytes) fit in it. */
const HEAD_BYTES = 64 * 1024;

export interface Qcow2Facts {
  virtualBytes: number;
  /** The backing file name in the header, as written (relative names are relative to the file). */
  backing?: string;
  backingFormat?: string;
}

/** The header's facts, or why this is not a qcow2 file haltpoint opens (one phrase). */
export function readQcow2Header(path: string): Qcow2Facts | { bad: string } {
  const buf = Buffer.alloc(HEAD_BYTES);
  const fd = openSync(path, "r");
  let n: number;
  try {
    n = readSync(fd, buf, 0, HEAD_BYTES, 0);
  } finally {
    closeSync(fd);
  }
  const head = buf.subarray(0, n);
  if (n < 104 || head.readUInt32BE(0) !== QCOW2_MAGIC) return { bad: "not a qcow2 file" };
  if (head.readUInt32BE(4) !== 3) return { bad: `qcow2 version ${head.readUInt32BE(4)}, haltpoint writes version 3 only` };
  if (head.readUInt32BE(32) !== 0) return { bad: "an encrypted qcow2" };
  if (head.readUInt32BE(60) !== 0) return { bad: "it has internal snapshots, which haltpoint never writes" };
  const incompatible = head.readBigUInt64BE(72);
  if ((incompatible & ~ALLOWED_INCOMPATIBLE) !== 0n) return { bad: `incompatible qcow2 features 0x${incompatible.toString(16)} (an external data file, a dirty or corrupt image)` };
  const headerLength = head.readUInt32BE(100);
  if (headerLength < 104 || headerLength > 4096) return { bad: `a qcow2 header of ${headerLength} bytes` };
  const facts: Qcow2Facts = { virtualBytes: Number(head.readBigUInt64BE(24)) };
  for (let at = headerLength; ; ) {
    if (at + 8 > n) return { bad: "qcow2 header extensions run past the header" };
    const type = head.readUInt32BE(at);
    const len = head.readUInt32BE(at + 4);
    if (type === EXT_END) break;
    if (at + 8 + len > n) return { bad: "a qcow2 header extension runs past the header" };
    if (type === EXT_DATA_FILE) return { bad: "it names an external data file" };
    if (type === EXT_ENCRYPTION) return { bad: "an encrypted qcow2" };
    if (type === EXT_BACKING_FORMAT) facts.backingFormat = head.toString("latin1", at + 8, at + 8 + len);
    at += 8 + Math.ceil(len / 8) * 8;
  }
  const backingOffset = Number(head.readBigUInt64BE(8));
  const backingLength = head.readUInt32BE(16);
  if (backingOffset !== 0) {
    if (backingLength === 0 || backingLength > 1023 || backingOffset + backingLength > n) return { bad: "its backing file name is not in its header" };
    facts.backing = head.toString("latin1", backingOffset, backingOffset + backingLength);
  }
  return facts;
}

/**
 * Why `path` is not a qcow2 to open with `backing` as its backing name (undefined: none), or
 * undefined when it is. QEMU is told the backing file explicitly anyway (qemu-argv.ts); this
 * refuses a disk that was made to point elsewhere.
 */
export function qcow2Refusal(path: string, backing: string | undefined): string | undefined {
  const h = readQcow2Header(path);
  if ("bad" in h) return h.bad;
  if (backing === undefined && h.backing !== undefined) return `it names a backing file (${JSON.stringify(h.backing)}), the bundle's base image has none`;
  if (backing !== undefined && h.backing !== backing) return `its backing file is ${h.backing === undefined ? "missing" : JSON.stringify(h.backing)}, not the bundle's ${JSON.stringify(backing)}`;
  if (backing !== undefined && h.backingFormat !== "qcow2") return `its backing file format is ${JSON.stringify(h.backingFormat ?? "unsaid")}, not qcow2`;
  return undefined;
}
