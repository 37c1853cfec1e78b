import type { ReportEvent, Reporter } from "../../report-events.ts";
import { writeReport } from "../atomic-write.ts";
import type { AttemptLines } from "../attempt-lines.ts";
import { buildJsonReport } from "../json-report.ts";
import { renderHtmlReport, type HtmlReportInput } from "./page.ts";

/**
 * `--html FILE`: the page is built from the JSON report's data model, plus what the run
 * left in its log dir, and written atomically at the end of the run like the other
 * reports (also after Ctrl-C). A failed attempt's output (shown where its log dir is gone)
 * comes from the shared `lines`, as the JSON report's does.
 */
export class HtmlReporter implements Reporter {
  constructor(
    private readonly file: string,
    private readonly lines: AttemptLines,
  ) {}

  async report(e: ReportEvent): Promise<void> {
    if (e.kind !== "end") return;
    const report = buildJsonReport(e.summary, this.lines);
    await writeHtmlReport(this.file, { report, sources: [{ label: "", report }], what: "haltpoint run" });
  }
}

export async function writeHtmlReport(file: string, input: Omit<HtmlReportInput, "pageFile">): Promise<void> {
  await writeReport(file, await renderHtmlReport({ ...input, pageFile: file }), "--html report");
}
