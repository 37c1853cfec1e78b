// The queue's format: what a queue holds besides BullMQ's own jobs, and what its jobs carry.
// - the suite record (`haltpoint-fleet:NAME:suite`): the fingerprint, the tests, the
//   options that decide the exit status; set once, by the first host (SET NX);
// - a job's payload: one run (`name#index`) and how long it is expected to take;
// - a job's return value, the result record: the run as the JSON report has it (attempts,
//   failures, the tail of a failed attempt's log), which host ran it, which hosts died
//   holding it, where its bundles are;
// - the stop record (--until-fail/--max-fail: why, and which host), the failure count,
//   each job's hosts so far, each host's facts, each host's heartbeat and presence channel,
//   each held run's lock token, how dead hosts were found.
// BullMQ's keys live under `haltpoint:NAME:`; ours under `haltpoint-fleet:NAME:`.
import type { StopReason } from "../../common/failure-kinds.ts";
import type { JsonRun } from "../reporters/json-report.ts";
import type { SuiteFingerprint } from "./fingerprint.ts";

export const QUEUE_FORMAT = "haltpoint-queue";
export const QUEUE_FORMAT_VERSION = 1;
/** BullMQ's key prefix. */
export const BULL_PREFIX = "haltpoint";

/** Our keys for queue `name`. */
export function queueKeys(name: string) {
  const k = (s: string) => `haltpoint-fleet:${name}:${s}`;
  return {
    suite: k("suite"),
    filled: k("filled"),
    stop: k("stop"),
    failures: k("failures"),
    holders: k("holders"),
    hosts: k("hosts"),
    /** A host's heartbeat (orchestrator/queue/host-liveness.ts): expires with its lease. */
    alive: (host: string) => k(`alive:${host}`),
    /** A host's channel, subscribed while its process lives (orchestrator/queue/host-presence.ts). */
    present: (host: string) => k(`present:${host}`),
    /** Each held run's BullMQ lock token, as its last holder took it (host-presence.ts hands back only that lock). */
    locks: k("locks"),
    /** How each host found dead was found (host → words), when not by its lease. */
    gone: k("gone"),
  };
}

export interface SuiteTest {
  name: string;
  /** Relative to the working directory. */
  file: string;
  retries: number;
}

/** The suite record: what every host must agree on, and what `queue report` needs. */
export interface SuiteRecord {
  format: typeof QUEUE_FORMAT;
  version: number;
  fingerprint: SuiteFingerprint;
  /** The host that made the queue, and when (ms since the epoch). */
  createdBy: string;
  createdAt: number;
  tests: SuiteTest[];
  runs: number;
  flakyFails: boolean;
  passWithNoTests: boolean;
  retries: number | null;
  maxFail: number | null;
}

/** A job's payload: one run. */
export interface JobPayload {
  key: string;
  test: string;
  index: number;
  /** From earlier durations (--durations), else the median; the queue's order. */
  expectedMs: number;
}

/** A job's return value. `notRun`: the host stopped (--until-fail elsewhere) before starting it. */
export interface ResultRecord {
  format: typeof QUEUE_FORMAT;
  version: number;
  host: string;
  key: string;
  test: string;
  index: number;
  run?: JsonRun;
  notRun?: true;
  /** Hosts that took this run before and died (their lease expired), in order. */
  lostOn: string[];
  /** Bundles saved by this run, on `host`. */
  bundles: string[];
}

/** Why the hosts stopped taking runs (--until-fail, --max-fail, no host left), and which host (or `queue report`) decided it. */
export interface StopRecord {
  stop: StopReason;
  host: string;
}

/** The stop record's `host` when `queue report` stopped the suite (no host was left). */
export const REPORT_HOST = "(queue report)";

/** One host's facts (for the report's per-host sources). */
export interface HostRecord {
  host: string;
  startedAt: number;
  jobs: number;
  logDir: string;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function parse(text: string | null | undefined, what: string): Record<string, unknown> {
  if (text == null) throw new Error(`${what}: missing`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${what}: not JSON (${(e as Error).message})`);
  }
  if (!isObj(v)) throw new Error(`${what}: not an object`);
  return v;
}

function checkVersion(v: Record<string, unknown>, what: string): void {
  if (v.format !== QUEUE_FORMAT) throw new Error(`${what}: not a haltpoint queue record (format '${String(v.format)}')`);
  if (typeof v.version !== "number" || v.version > QUEUE_FORMAT_VERSION) throw new Error(`${what}: queue format version ${String(v.version)} is newer than this haltpoint reads (${QUEUE_FORMAT_VERSION})`);
}

export function decodeSuite(text: string | null, where: string): SuiteRecord {
  const v = parse(text, `${where}: suite record`);
  checkVersion(v, `${where}: suite record`);
  if (!isObj(v.fingerprint) || !Array.isArray(v.tests) || typeof v.runs !== "number") throw new Error(`${where}: suite record is incomplete`);
  return v as unknown as SuiteRecord;
}

export function checkPayload(data: unknown, jobId: string): JobPayload {
  if (!isObj(data) || typeof data.key !== "string" || typeof data.test !== "string" || !Number.isSafeInteger(data.index) || typeof data.expectedMs !== "number") {
    throw new Error(`job ${jobId}: not a haltpoint run (payload ${JSON.stringify(data)?.slice(0, 80)})`);
  }
  return data as unknown as JobPayload;
}

export function checkResult(value: unknown, jobId: string): ResultRecord {
  const what = `job ${jobId}: result record`;
  if (!isObj(value)) throw new Error(`${what}: not an object`);
  checkVersion(value, what);
  if (typeof value.host !== "string" || typeof value.key !== "string" || !Array.isArray(value.lostOn) || !Array.isArray(value.bundles)) throw new Error(`${what}: incomplete`);
  if (!value.notRun && (!isObj(value.run) || !Array.isArray((value.run as { attempts?: unknown }).attempts))) throw new Error(`${what}: no run`);
  return value as unknown as ResultRecord;
}

export function decodeStop(text: string | null): StopRecord | undefined {
  if (text == null) return undefined;
  const v = parse(text, "stop record");
  if (!isObj(v.stop) || typeof v.host !== "string") throw new Error("stop record: incomplete");
  return v as unknown as StopRecord;
}

export function decodeHost(text: string): HostRecord {
  const v = parse(text, "host record");
  if (typeof v.host !== "string" || typeof v.startedAt !== "number") throw new Error("host record: incomplete");
  return v as unknown as HostRecord;
}
