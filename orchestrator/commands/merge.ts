// `haltpoint merge REPORT.json…`: the JSON reports of several runs — typically the shards
// of one suite run on many CI machines (`--shard K/N`) — merged into one summary, JUnit and
// JSON report, and the exit status `haltpoint run` would have given for the whole suite.
import { readFile, stat } from "node:fs/promises";
import { MAX_REPORT_BYTES, checkReportShape } from "../reporters/report-shape.ts";
import { UsageError } from "../selection/discovery.ts";
import type { LoadError, PlannedRun, PlannedTest } from "../selection/plan.ts";
import type { Failure, StopReason } from "../../common/failure-kinds.ts";
import { exitStatus, resultFromAttempts, type RunAttempt, type SuiteSummary } from "../results.ts";
import { ReporterSet, type Reporter } from "../report-events.ts";
import { AttemptLines, JUNIT_LOG_LINES } from "../reporters/attempt-lines.ts";
import { formatShard, type Shard } from "../selection/shard.ts";
import { JSON_REPORT_FORMAT, JSON_REPORT_VERSION, JsonReporter, buildJsonReport, type JsonAttempt, type JsonReport, type JsonRun } from "../reporters/json-report.ts";
import { JUnitReporter } from "../reporters/junit.ts";
import { TerminalReporter } from "../reporters/terminal.ts";
import { GitHubReporter } from "../reporters/github.ts";

export interface MergeOptions {
  reports: string[];
  junit?: string;
  json?: string;
  /** One HTML page for the merged suite (--html). */
  html?: string;
  /** A flaky run fails the suite (also on if any report was made with --flaky-fails). */
  flakyFails?: boolean;
  /** Merge although some shards of a sharded run have no report. */
  allowMissingShards?: boolean;
  /** Reports holding no test pass (else exit status 4). */
  passWithNoTests?: boolean;
  /** Print the summary (false in tests that only want the reports). */
  terminal?: boolean;
  out?: NodeJS.WritableStream;
}

/** A report as read, with the file it came from (for error messages). */
export interface ReportFile {
  file: string;
  report: JsonReport;
}

/** Read and check a report written by `haltpoint run --json` (format version 1 or 2). */
export async function readReport(file: string): Promise<ReportFile> {
  let text: string;
  try {
    const bytes = (await stat(file)).size;
    if (bytes > MAX_REPORT_BYTES) throw new UsageError(`${file}: ${bytes} bytes, over the ${MAX_REPORT_BYTES}-byte limit of a report`);
    text = await readFile(file, "utf8");
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let data: Partial<JsonReport> & { version?: unknown };
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not JSON: ${(e as Error).message}`);
  }
  if (typeof data !== "object" || data === null || !Array.isArray(data.tests) || typeof data.version !== "number") {
    throw new UsageError(`${file}: not a haltpoint JSON report (write one with haltpoint run --json FILE)`);
  }
  if (data.format !== undefined && data.format !== JSON_REPORT_FORMAT) throw new UsageError(`${file}: not a haltpoint JSON report (format '${String(data.format)}')`);
  if (data.version > JSON_REPORT_VERSION) throw new UsageError(`${file}: report format version ${data.version} is newer than this haltpoint reads (${JSON_REPORT_VERSION})`);
  // It may come from anyone (a CI artifact): every field the readers use, checked.
  checkReportShape(data, file);
  return { file, report: data as JsonReport };
}

/** Version 1 runs have no attempts: their one attempt is the run. */
function attemptsOf(r: JsonRun): JsonAttempt[] {
  if (Array.isArray(r.attempts) && r.attempts.length) return r.attempts;
  const failed = r.outcome !== "passed";
  return [
    {
      attempt: 1,
      outcome: failed ? "failed" : "passed",
      startedAt: r.startedAt,
      durationMs: r.durationMs,
      logDir: r.logDir,
      ...(failed && r.error ? { error: { name: "Error", message: r.error } } : {}),
      ...(failed && r.reason ? { reason: r.reason } : {}),
    },
  ];
}

function toAttempt(a: JsonAttempt): RunAttempt {
  const out: RunAttempt = { attempt: a.attempt, outcome: a.outcome, startedAt: Date.parse(a.startedAt), durationMs: a.durationMs, logDir: a.logDir };
  if (a.error) out.error = a.error;
  if (a.reason) out.reason = a.reason;
  if (a.failure) {
    // The words are made again from the kind; an older report's `reason` stays as it was.
    const { message: _words, ...failure } = a.failure;
    out.failure = failure as Failure;
  }
  if (a.slot !== undefined) out.slot = a.slot;
  if (a.host) out.host = a.host;
  if (a.lostHosts?.length) out.lostHosts = a.lostHosts;
  if (a.halts?.length) out.halts = a.halts.map((h) => ({ ...h, startedAt: Date.parse(h.startedAt) }));
  return out;
}

/** Check that sharded reports are the shards of one run: one total, no shard twice, none missing. */
function checkShards(files: ReportFile[], allowMissing: boolean): Shard[] {
  const sharded = files.filter((f) => f.report.shard);
  if (!sharded.length) return [];
  const totals = new Set(sharded.map((f) => f.report.shard!.total));
  if (totals.size > 1) throw new UsageError(`the reports are shards of different splits (${[...totals].map((t) => `of ${t}`).join(", ")}): ${sharded.map((f) => `${f.file} is ${formatShard(f.report.shard!)}`).join(", ")}`);
  const total = [...totals][0]!;
  const seen = new Map<number, string>();
  for (const f of sharded) {
    const k = f.report.shard!.index;
    const other = seen.get(k);
    if (other) throw new UsageError(`shard ${k}/${total} is in both ${other} and ${f.file}`);
    seen.set(k, f.file);
  }
  const missing = Array.from({ length: total }, (_, i) => i + 1).filter((k) => !seen.has(k));
  if (missing.length && !allowMissing) {
    throw new UsageError(`no report for shard${missing.length === 1 ? "" : "s"} ${missing.map((k) => `${k}/${total}`).join(", ")} (the merged result would miss tests; --allow-missing-shards merges anyway)`);
  }
  return [...seen.keys()].sort((a, b) => a - b).map((index) => ({ index, total }));
}

/** What merging gives, beyond the summary: each failed attempt's output lines, per run key. */
export interface Merged {
  summary: SuiteSummary;
  logs: { key: string; attempt: number; lines: string[] }[];
  shards: Shard[];
}

/** Merge reports into one suite summary (pure apart from its errors, which are UsageErrors). */
export function mergeReports(given: ReportFile[], o: { flakyFails?: boolean; allowMissingShards?: boolean; passWithNoTests?: boolean } = {}): Merged {
  if (!given.length) throw new UsageError("merge needs at least one report");
  // A --rerun-failed report continues runs of an earlier one: read the earlier first.
  const files = [...given].sort((a, b) => Number(Boolean(a.report.rerunOf)) - Number(Boolean(b.report.rerunOf)) || Date.parse(a.report.startedAt) - Date.parse(b.report.startedAt));
  const shards = checkShards(files.filter((f) => !f.report.rerunOf), o.allowMissingShards ?? false);
  const tests = new Map<string, { test: PlannedTest; from: string }>();
  const byKey = new Map<string, { run: PlannedRun; attempts: RunAttempt[] }>();
  const notRun: PlannedRun[] = [];
  const runFrom = new Map<string, string>();
  const logs: Merged["logs"] = [];
  const loadErrors = new Map<string, LoadError>();
  for (const { file, report } of files) {
    for (const t of report.tests) {
      let entry = tests.get(t.name);
      if (!entry) tests.set(t.name, (entry = { test: { file: t.file, name: t.name, nodes: [], globalTimeout: 0, enableDebugHook: false, retries: t.retries ?? 0 }, from: file }));
      else if (entry.test.file !== t.file && !report.shard) {
        throw new UsageError(`test '${t.name}' is ${entry.test.file} in ${entry.from} but ${t.file} in ${file}`);
      }
      const claim = (key: string): void => {
        const other = runFrom.get(key);
        if (other) throw new UsageError(`run ${key} is in both ${other} and ${file}`);
        runFrom.set(key, file);
      };
      for (const r of t.runs) {
        const earlier = report.rerunOf ? byKey.get(r.key) : undefined;
        // A rerun's attempts follow the original's: one run, every attempt counted once.
        if (earlier) {
          runFrom.set(r.key, file);
          const n = earlier.attempts.length;
          for (const a of attemptsOf(r)) {
            earlier.attempts.push(toAttempt({ ...a, attempt: n + a.attempt }));
            if (a.log?.length) logs.push({ key: r.key, attempt: n + a.attempt, lines: a.log });
          }
          continue;
        }
        claim(r.key);
        const run: PlannedRun = { key: r.key, test: entry.test, index: r.run };
        const attempts = attemptsOf(r);
        byKey.set(r.key, { run, attempts: attempts.map(toAttempt) });
        for (const a of attempts) if (a.log?.length) logs.push({ key: r.key, attempt: a.attempt, lines: a.log });
      }
      for (const n of t.notRun ?? []) {
        const key = `${t.name}#${n}`;
        claim(key);
        notRun.push({ key, test: entry.test, index: n });
      }
    }
    for (const e of report.loadErrors ?? []) loadErrors.set(`${e.file}\0${e.error}`, e);
  }
  const results = [...byKey.values()].map((r) => resultFromAttempts(r.run, r.attempts));
  const starts = files.map((f) => Date.parse(f.report.startedAt));
  const ends = files.map((f, i) => starts[i]! + f.report.durationMs);
  const sortedTests = [...tests.values()].map((e) => e.test).sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.name.localeCompare(b.name)));
  const retries = new Set(files.map((f) => f.report.retries ?? null));
  const logDirs = [...new Set(files.map((f) => f.report.logDir).filter(Boolean))];
  const summary: SuiteSummary = {
    plan: {
      tests: sortedTests,
      runs: [...results.map((r) => r.run), ...notRun],
      loadErrors: [...loadErrors.values()],
      jobs: files.reduce((s, f) => s + (f.report.jobs ?? 0), 0),
      logDir: logDirs.join(", "),
      flakyFails: (o.flakyFails ?? false) || files.some((f) => f.report.flakyFails),
      passWithNoTests: (o.passWithNoTests ?? false) || files.some((f) => f.report.passWithNoTests),
      ...(retries.size === 1 && [...retries][0] != null ? { retries: [...retries][0]! } : {}),
    },
    results: results.sort((a, b) => a.startedAt - b.startedAt),
    notRun,
    interrupted: files.some((f) => f.report.interrupted),
    ...stopOf(files),
    startedAt: Math.min(...starts),
    durationMs: Math.max(...ends) - Math.min(...starts),
  };
  return { summary, logs, shards };
}

/** The merged page: the merged report's data, each report's runs in its own timeline lanes. */
async function htmlMergeReporter(file: string, files: ReportFile[], lines: AttemptLines, shards: Shard[]): Promise<Reporter> {
  const { writeHtmlReport } = await import("../reporters/html/html-reporter.ts");
  const sources = files.map((f) => ({ label: f.report.shard ? `shard ${formatShard(f.report.shard)}` : f.file, report: f.report }));
  const what = `haltpoint merge of ${files.length} report${files.length === 1 ? "" : "s"}${shards.length ? ` (shards ${shards.map(formatShard).join(", ")})` : ""}: ${files.map((f) => f.file).join(", ")}`;
  return { report: async (e) => (e.kind === "end" ? writeHtmlReport(file, { report: buildJsonReport(e.summary, lines), sources, what }) : undefined) };
}

/** `haltpoint merge`: read, merge, report. Resolves with the exit status. */
export async function mergeCommand(o: MergeOptions): Promise<number> {
  return reportMerged(await Promise.all(o.reports.map(readReport)), o);
}

/** Merge reports already read and write the merged reports (`haltpoint merge`, `haltpoint queue report`). */
export async function reportMerged(files: ReportFile[], o: Omit<MergeOptions, "reports"> & { what?: string }): Promise<number> {
  const { summary, logs, shards } = mergeReports(files, o);
  const reporters: Reporter[] = [];
  const out = o.out ?? process.stdout;
  if (o.terminal !== false) {
    const n = summary.results.length;
    const shardNote = shards.length ? ` (shard${shards.length === 1 ? "" : "s"} ${shards.map(formatShard).join(", ")})` : "";
    out.write(`${o.what ?? `haltpoint merge: ${files.length} report${files.length === 1 ? "" : "s"}${shardNote}`}, ${summary.plan.tests.length} tests, ${n} run${n === 1 ? "" : "s"}\n`);
    reporters.push(new TerminalReporter({ quiet: true, live: false, out }));
  }
  // The reports' logs as the JSON reports had them (a failed attempt's last lines; JUnit cuts at its own limit).
  const lines = new AttemptLines({ max: JUNIT_LOG_LINES, keepPassed: true });
  for (const l of logs) lines.set(l.key, l.attempt, l.lines);
  if (o.junit) reporters.push(new JUnitReporter(o.junit, lines));
  if (o.json) reporters.push(new JsonReporter(o.json, lines));
  if (o.html) reporters.push(await htmlMergeReporter(o.html, files, lines, shards));
  if (o.terminal !== false && process.env.GITHUB_ACTIONS === "true") reporters.push(new GitHubReporter(out));
  await new ReporterSet(reporters).end(summary);
  return exitStatus(summary);
}

/** The first shard's stop (--until-fail, --max-fail, Ctrl-C), if any stopped. */
function stopOf(files: ReportFile[]): { stop?: StopReason } {
  const s = files.map((f) => f.report.stoppedBy).find((x) => x);
  if (!s) return {};
  const { message: _words, ...stop } = s;
  return { stop: stop as StopReason };
}
