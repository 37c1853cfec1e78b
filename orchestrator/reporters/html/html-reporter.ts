import type { PlannedRun } from "../../selection/plan.ts";
import type { Reporter, RunAttempt, RunResult, SuiteSummary } from "../../results.ts";
import type { WorkerEvent } from "../../../common/events.ts";
import { writeReport } from "../atomic-write.ts";
import { AttemptLines } from "../attempt-lines.ts";
import { buildJsonReport } from "../json-report.ts";
import { renderHtmlReport, type HtmlReportInput } from "./page.ts";

/** Lines of a failed attempt's output kept, as the JSON report keeps them (shown where its log dir is gone). */
const FAILED_LOG_LINES = 100;

/**
 * `--html FILE`: the page is built from the JSON report's data model, plus what the run
 * left in its log dir, and written atomically at the end of the run like the other
 * reports (also after Ctrl-C).
 */
export class HtmlReporter implements Reporter {
  private readonly lines = new AttemptLines(FAILED_LOG_LINES);

  constructor(private readonly file: string) {}

  onEvent(run: PlannedRun, e: WorkerEvent): void {
    this.lines.onEvent(run, e);
  }

  onRetry(run: PlannedRun, _failed: RunAttempt, next: number): void {
    this.lines.onRetry(run, next);
  }

  onRunEnd(r: RunResult): void {
    // Only failed attempts' output is kept: no more in memory over 1,000s of runs.
    for (const a of r.attempts) if (a.outcome === "passed") this.lines.drop(r.run.key, a.attempt);
  }

  async onEnd(s: SuiteSummary): Promise<void> {
    const report = buildJsonReport(s, this.lines);
    await writeHtmlReport(this.file, { report, sources: [{ label: "", report }], what: "haltpoint run" });
  }
}

export async function writeHtmlReport(file: string, input: Omit<HtmlReportInput, "pageFile">): Promise<void> {
  await writeReport(file, await renderHtmlReport({ ...input, pageFile: file }), "--html report");
}
