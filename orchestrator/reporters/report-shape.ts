// A JSON report read back (`haltpoint merge`, `--durations`, `--rerun-failed`) may come from
// anyone: a CI artifact, another job's upload. Its shape is checked field by field, down to
// what the readers use, before any of it is used; one line names the file and the field.
// Sizes are bounded before it is read.

import { UsageError } from "../selection/discovery.ts";

/** A report larger than this is not read (a 10,000-run suite's report is a few MiB). */
export const MAX_REPORT_BYTES = 256 * 2 ** 20;

type Check = (v: unknown, at: string) => void;

class ShapeError extends Error {}

const fail = (at: string, what: string): never => {
  throw new ShapeError(`${at}: ${what}`);
};
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const str: Check = (v, at) => void (typeof v !== "string" && fail(at, "must be a string"));
const time: Check = (v, at) => void ((typeof v !== "string" || Number.isNaN(Date.parse(v))) && fail(at, "must be a time (ISO 8601)"));
const count: Check = (v, at) => void ((typeof v !== "number" || !Number.isInteger(v) || v < 0) && fail(at, "must be an integer ≥ 0"));
const ms: Check = (v, at) => void ((typeof v !== "number" || !Number.isFinite(v) || v < 0) && fail(at, "must be a number ≥ 0"));
const oneOf =
  (...xs: string[]): Check =>
  (v, at) =>
    void (!xs.includes(v as string) && fail(at, `must be ${xs.map((x) => JSON.stringify(x)).join(" or ")}`));
const optional =
  (c: Check): Check =>
  (v, at) =>
    void (v !== undefined && c(v, at));
const list =
  (c: Check, max = 1_000_000): Check =>
  (v, at) => {
    if (!Array.isArray(v)) fail(at, "must be a list");
    if ((v as unknown[]).length > max) fail(at, `more than ${max} entries`);
    for (const [i, x] of (v as unknown[]).entries()) c(x, `${at}[${i}]`);
  };
const object =
  (fields: Record<string, Check>): Check =>
  (v, at) => {
    if (!isObject(v)) fail(at, "must be an object");
    for (const [k, c] of Object.entries(fields)) c((v as Record<string, unknown>)[k], at ? `${at}.${k}` : k);
  };

const error = object({ name: str, message: str, stack: optional(str) });
const failure: Check = (v, at) => {
  object({ kind: str, message: optional(str) })(v, at);
};
const halt = object({ startedAt: time, durationMs: ms });
const attempt = object({
  attempt: count,
  outcome: oneOf("passed", "failed"),
  startedAt: time,
  durationMs: ms,
  logDir: str,
  error: optional(error),
  reason: optional(str),
  failure: optional(failure),
  log: optional(list(str)),
  slot: optional(count),
  halts: optional(list(halt)),
});
const run = object({
  run: count,
  key: str,
  outcome: oneOf("passed", "failed", "flaky"),
  startedAt: time,
  durationMs: ms,
  error: optional(str),
  reason: optional(str),
  failure: optional(failure),
  logDir: str,
  attempts: optional(list(attempt)),
});
const test = object({ name: str, file: str, retries: optional(count), runs: list(run), notRun: optional(list(count)) });
const shard = (v: unknown, at: string) => void (v !== null && v !== undefined && object({ index: count, total: count })(v, at));
const report = object({
  version: count,
  startedAt: time,
  durationMs: optional(ms),
  flakyFails: optional((v, at) => void (typeof v !== "boolean" && fail(at, "must be true or false"))),
  shard,
  rerunOf: optional(object({ report: str, startedAt: time })),
  tests: list(test),
  loadErrors: optional(list(object({ file: str, error: str }))),
});

/** Check a parsed report's shape; a UsageError naming `file` and the first wrong field. */
export function checkReportShape(data: unknown, file: string): void {
  try {
    report(data, "");
  } catch (e) {
    if (e instanceof ShapeError) throw new UsageError(`${file}: ${e.message} (not a haltpoint JSON report as haltpoint run --json writes it)`);
    throw e;
  }
}
