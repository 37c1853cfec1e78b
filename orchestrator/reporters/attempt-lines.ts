import type { WorkerEvent } from "../../common/events.ts";
import type { PlannedRun } from "../selection/plan.ts";
import { formatEvent } from "./format.ts";

/**
 * The last `max` printed lines of each attempt of each run (for JUnit's <system-out> and
 * the JSON report's failure logs). Attempt n of run `key` is `get(key, n)`.
 */
export class AttemptLines {
  private lines = new Map<string, string[][]>();

  constructor(private readonly max: number) {}

  onEvent(run: PlannedRun, e: WorkerEvent): void {
    const s = formatEvent(run, e);
    if (!s) return;
    let attempts = this.lines.get(run.key);
    if (!attempts) this.lines.set(run.key, (attempts = [[]]));
    const l = attempts.at(-1)!;
    l.push(s);
    if (l.length > this.max) l.splice(0, l.length - this.max);
  }

  /** The next events belong to attempt `next`. */
  onRetry(run: PlannedRun, next: number): void {
    let attempts = this.lines.get(run.key);
    if (!attempts) this.lines.set(run.key, (attempts = [[]]));
    while (attempts.length < next) attempts.push([]);
  }

  get(key: string, attempt: number): string[] {
    return this.lines.get(key)?.[attempt - 1] ?? [];
  }

  /** Forget an attempt's lines (they will not be reported). */
  drop(key: string, attempt: number): void {
    const l = this.lines.get(key)?.[attempt - 1];
    if (l) l.length = 0;
  }

  /** Lines known from elsewhere (`haltpoint merge` reads them from JSON reports). */
  set(key: string, attempt: number, lines: string[]): void {
    let attempts = this.lines.get(key);
    if (!attempts) this.lines.set(key, (attempts = []));
    while (attempts.length < attempt) attempts.push([]);
    attempts[attempt - 1] = lines.slice(-this.max);
  }
}
