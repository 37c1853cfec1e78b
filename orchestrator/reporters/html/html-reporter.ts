import type { PlannedRun } from "../../plan.ts";
import type { Reporter, RunAttempt, RunResult, SuiteSummary } from "../../results.ts";
import type { WorkerEvent } from "../../../worker/events.ts";
import { writeReport } from "../atomic-write.ts";
import { JsonReporter, buildJsonReport } from "../json-report.ts";
import { renderHtmlReport } from "./page.ts";

/**
 * `--html FILE`: the report built from the JSON report's data (the same AttemptLines keep
 * a failed attempt's output), plus what the run left in its log dir, written atomically
 * at the end of the run, as the other reports (also after Ctrl-C).
 */
export class HtmlReporter implements Reporter {
  private readonly json = new JsonReporter("");

  constructor(private readonly file: string) {}

  onEvent(run: PlannedRun, e: WorkerEvent): void {
    this.json.onEvent(run, e);
  }

  onRetry(run: PlannedRun, failed: RunAttempt, next: number): void {
    this.json.onRetry(run, failed, next);
  }

  onRunEnd(r: RunResult): void {
    this.json.onRunEnd(r);
  }

  async onEnd(s: SuiteSummary): Promise<void> {
    const report = buildJsonReport(s, this.json.lines);
    await writeHtmlReport(this.file, { report, sources: [{ label: "", report }], what: "haltpoint run" });
  }
}

export async function writeHtmlReport(file: string, input: { report: Parameters<typeof renderHtmlReport>[0]["report"]; sources: Parameters<typeof renderHtmlReport>[0]["sources"]; what: string }): Promise<void> {
  await writeReport(file, await renderHtmlReport({ ...input, pageFile: file }));
}
