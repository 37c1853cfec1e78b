import { close, mkdir, mkdirSync, open, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import type { WorkerEvent } from "../../common/events.ts";
import type { PlannedRun } from "../selection/plan.ts";
import { reasonOf, type RunAttempt, type RunResult } from "../results.ts";
import type { ReportEvent, Reporter } from "../report-events.ts";
import type { Notice } from "../../common/failure-kinds.ts";
import { stderrTeardownLog, teardownFailure } from "../../common/teardown.ts";

/**
 * A pino destination for one run's file: every line is one write(2) as it comes, so nothing
 * already reported is lost if the orchestrator dies. Closing costs no fsync
 * (pino.destination's close fsyncs). A run's dir is one level below the log dir (a retry's
 * one below the run's): a plain mkdir first, a recursive one only when the parent is gone.
 *
 * Where the directory and file are made depends on the file system (bench/dispatch-refs.ts,
 * measured both ways on each): on a disk, on libuv's thread pool through fs's callbacks (on
 * the main thread they were its largest cost per run at thousands of short runs; promises
 * and FileHandles cost it more than callbacks); in memory (tmpfs), synchronously, where the
 * calls cost less than waking a pool thread for each. Lines that arrive before the file is
 * open wait in memory.
 */
class LineFile {
  private fd = -1;
  private pending: string[] | undefined = [];
  private closing = false;
  private readonly file: string;

  constructor(
    private readonly dir: string,
    name: string,
    inMemory: boolean,
    private readonly onWriteError: (file: string, e: NodeJS.ErrnoException) => void,
  ) {
    this.file = join(dir, name);
    if (inMemory) this.createNow();
    else
      mkdir(dir, (e) => {
        if (!e || e.code === "EEXIST") this.openFile();
        else if (e.code === "ENOENT") mkdir(dir, { recursive: true }, (e2) => (e2 ? this.unwritable(e2) : this.openFile()));
        else this.unwritable(e);
      });
  }

  private createNow(): void {
    try {
      try {
        mkdirSync(this.dir);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOENT") mkdirSync(this.dir, { recursive: true });
        else if (code !== "EEXIST") throw e;
      }
      this.opened(openSync(this.file, "a"));
    } catch (e) {
      this.unwritable(e as NodeJS.ErrnoException);
    }
  }

  private openFile(): void {
    open(this.file, "a", (e, fd) => (e ? this.unwritable(e) : this.opened(fd)));
  }

  private opened(fd: number): void {
    this.fd = fd;
    const waiting = this.pending ?? [];
    this.pending = undefined;
    for (const l of waiting) this.writeLine(l);
    if (this.closing) this.close();
  }

  /** An unwritable log dir loses the log, not the run: said once (run-log-truncated). */
  private unwritable(e: NodeJS.ErrnoException): void {
    this.pending = undefined;
    this.onWriteError(this.file, e);
  }

  write(line: string): void {
    if (this.pending) this.pending.push(line);
    else this.writeLine(line);
  }

  /** A full disk (ENOSPC) or a failing one truncates this log; the run and its result go on. */
  private writeLine(line: string): void {
    if (this.fd < 0) return;
    try {
      writeSync(this.fd, line);
    } catch (e) {
      this.close();
      this.onWriteError(this.file, e as NodeJS.ErrnoException);
    }
  }

  close(): void {
    this.closing = true;
    if (this.pending || this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    close(fd, (e) => e && stderrTeardownLog(teardownFailure(`closing ${this.file}`, e)));
  }
}

/**
 * pino JSON lines, one file per run: `<log dir>/<test>#<run>/run.jsonl` (a retry's in
 * `…/try<N>/run.jsonl`, its lines carrying `attempt`). Synchronous writes: a crash of the
 * orchestrator loses no line already reported. (Each machine's console goes to
 * `<machine>.console.log` beside it, written by the worker.)
 */
export class RunLogReporter implements Reporter {
  private logs = new Map<string, { log: Logger; dest: LineFile }>();
  private warned = false;
  /** One pino logger for every run: a run's logger is its child, writing to the run's own
   *  file. pino() builds its serializers, levels and formatters afresh each time, a child
   *  only its bindings (pino() per run was a fifth of the main thread's time per run). */
  private readonly root = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime }, { write: () => {} }).child({});

  /**
   * `notice`: told once when log lines start being dropped (the disk is full).
   * `inMemory`: the log dir is on tmpfs (orchestrator/settings/file-system-type.ts): run
   * files are made synchronously there (see LineFile).
   */
  constructor(
    private readonly notice: (n: Notice) => void = () => {},
    private readonly inMemory = false,
  ) {}

  private readonly onWriteError = (file: string, e: NodeJS.ErrnoException): void => {
    if (this.warned) return;
    this.warned = true;
    this.notice({ kind: "run-log-truncated", error: e.code ?? e.message, file });
  };

  report(e: ReportEvent): void {
    if (e.kind === "run-start") this.open(e.run, e.logDir, 1);
    else if (e.kind === "worker-event") this.onEvent(e.run, e.event);
    else if (e.kind === "retry") this.onRetry(e.run, e.failed, e.next, e.logDir);
    else if (e.kind === "run-end") this.onRunEnd(e.result);
  }

  private open(run: PlannedRun, logDir: string, attempt: number): Logger {
    const dest = new LineFile(logDir, "run.jsonl", this.inMemory, this.onWriteError);
    const base = { test: run.test.name, run: run.index, file: run.test.file, ...(attempt > 1 ? { attempt } : {}) };
    const log = this.root.child(base);
    // pino.symbols are exported for this ("methods to be overridden or proxied for
    // performant integration"): the child writes to its run's file, not the root's stream.
    (log as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] = dest;
    this.logs.set(run.key, { log, dest });
    log.info({ event: "run-start" }, attempt > 1 ? `attempt ${attempt} started` : "run started");
    return log;
  }

  private onRetry(run: PlannedRun, failed: RunAttempt, next: number, logDir: string): void {
    const entry = this.logs.get(run.key);
    if (entry) {
      const fields = { event: "attempt-end", attempt: failed.attempt, outcome: failed.outcome, durationMs: Math.round(failed.durationMs), reason: reasonOf(failed), failure: failed.failure, err: failed.error };
      entry.log.error(fields, `attempt ${failed.attempt} failed: ${reasonOf(failed) ?? failed.error?.message ?? ""}; retrying (attempt ${next}, logs in ${logDir})`);
      entry.dest.close();
    }
    this.open(run, logDir, next);
  }

  private onEvent(run: PlannedRun, e: WorkerEvent): void {
    const l = this.logs.get(run.key)?.log;
    if (!l) return;
    switch (e.t) {
      case "log":
        l[e.level ?? "info"]({ event: "log", machine: e.machine }, e.msg);
        break;
      case "subtest":
        (e.phase === "fail" ? l.error.bind(l) : l.info.bind(l))({ event: "subtest", phase: e.phase, name: e.name, durationMs: e.durationMs, err: e.error }, `subtest ${e.phase}: ${e.name}`);
        break;
      case "process":
        l.debug({ event: "process", machine: e.machine, pid: e.pid, alive: e.alive });
        break;
      case "start":
        l.info({ event: "worker", threadId: e.threadId }, `running in worker thread ${e.threadId}`);
        break;
      default:
        break;
    }
  }

  private onRunEnd(r: RunResult): void {
    const entry = this.logs.get(r.run.key);
    if (!entry) return;
    this.logs.delete(r.run.key);
    const fields = { event: "run-end", outcome: r.outcome, attempts: r.attempts.length, durationMs: Math.round(r.durationMs), reason: reasonOf(r), failure: r.failure, err: r.error };
    if (r.outcome === "passed") entry.log.info(fields, "passed");
    else if (r.outcome === "flaky") entry.log.warn(fields, `flaky: passed on attempt ${r.attempts.length} after: ${reasonOf(r) ?? r.error?.message ?? ""}`);
    else entry.log.error(fields, `failed: ${reasonOf(r) ?? r.error?.message ?? ""}`);
    entry.dest.close();
  }
}
