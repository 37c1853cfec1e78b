import { join } from "node:path";
import { pino, type Logger } from "pino";
import type { WorkerEvent } from "../../worker/events.ts";
import type { PlannedRun } from "../plan.ts";
import type { Reporter, RunResult } from "../results.ts";

type Destination = ReturnType<typeof pino.destination>;

/**
 * pino JSON lines, one file per run: `<log dir>/<test>#<run>/run.jsonl`. Synchronous
 * writes: a crash of the orchestrator loses no line already reported. (Each machine's
 * console goes to `<machine>.console.log` beside it, written by the worker.)
 */
export class RunLogReporter implements Reporter {
  private logs = new Map<string, { log: Logger; dest: Destination }>();

  onRunStart(run: PlannedRun, logDir: string): void {
    const dest = pino.destination({ dest: join(logDir, "run.jsonl"), sync: true, mkdir: true });
    const log = pino({ base: { test: run.test.name, run: run.index, file: run.test.file }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
    this.logs.set(run.key, { log, dest });
    log.info({ event: "run-start" }, "run started");
  }

  onEvent(run: PlannedRun, e: WorkerEvent): void {
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

  onRunEnd(r: RunResult): void {
    const entry = this.logs.get(r.run.key);
    if (!entry) return;
    this.logs.delete(r.run.key);
    const fields = { event: "run-end", outcome: r.outcome, durationMs: Math.round(r.durationMs), reason: r.reason, err: r.error };
    if (r.outcome === "passed") entry.log.info(fields, "passed");
    else entry.log.error(fields, `failed: ${r.reason ?? r.error?.message ?? ""}`);
    entry.dest.end();
  }
}
