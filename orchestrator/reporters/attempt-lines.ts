import type { ReportEvent, Reporter } from "../report-events.ts";
import { formatEvent } from "./format.ts";

/** Lines of a failed attempt's output in the JSON report (for a merged JUnit's logs), the HTML report and queue records. */
export const FAILED_LOG_LINES = 100;

/** Lines of each attempt's output in a JUnit report's <system-out>. */
export const JUNIT_LOG_LINES = 400;

export interface AttemptLinesOptions {
  /** Lines kept per attempt (the last ones). */
  max: number;
  /** Keep a passed attempt's lines too (JUnit's <system-out>); else they are dropped at its run's end. */
  keepPassed: boolean;
}

/**
 * The one collector of printed lines per attempt of each run, shared by the reports that
 * show them (JUnit's <system-out>, the JSON and HTML reports' failure logs, queue mode's
 * result records): it is a reporter of its own, added before them. Attempt n of run `key`
 * is `get(key, n)`.
 */
export class AttemptLines implements Reporter {
  private lines = new Map<string, string[][]>();

  constructor(private readonly o: AttemptLinesOptions) {}

  report(e: ReportEvent): void {
    if (e.kind === "worker-event") {
      const s = formatEvent(e.run, e.event);
      if (!s) return;
      const l = this.attempts(e.run.key, 1).at(-1)!;
      l.push(s);
      if (l.length > this.o.max) l.splice(0, l.length - this.o.max);
    } else if (e.kind === "retry") {
      // The next events belong to attempt `next`.
      this.attempts(e.run.key, e.next);
    } else if (e.kind === "run-end" && !this.o.keepPassed) {
      // Only failed attempts' output is reported: no more in memory over 1,000s of runs.
      for (const a of e.result.attempts) if (a.outcome === "passed") this.drop(e.result.run.key, a.attempt);
    }
  }

  /** The run's attempts' lines, at least `count` of them. */
  private attempts(key: string, count: number): string[][] {
    let attempts = this.lines.get(key);
    if (!attempts) this.lines.set(key, (attempts = []));
    while (attempts.length < count) attempts.push([]);
    return attempts;
  }

  get(key: string, attempt: number): string[] {
    return this.lines.get(key)?.[attempt - 1] ?? [];
  }

  /** Forget an attempt's lines (they will not be reported). */
  private drop(key: string, attempt: number): void {
    const l = this.lines.get(key)?.[attempt - 1];
    if (l) l.length = 0;
  }

  /** What the reports made in this run need: with --junit every attempt's last 400 lines, else a failed one's last 100. */
  static forReports(o: { junit: boolean }): AttemptLines {
    return new AttemptLines(o.junit ? { max: JUNIT_LOG_LINES, keepPassed: true } : { max: FAILED_LOG_LINES, keepPassed: false });
  }

  /** Lines known from elsewhere (`haltpoint merge` reads them from JSON reports). */
  set(key: string, attempt: number, lines: string[]): void {
    this.attempts(key, attempt)[attempt - 1] = lines.slice(-this.o.max);
  }
}
