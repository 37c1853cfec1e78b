import { isAbsolute, relative } from "node:path";
import { runMessage, type RunResult, type SuiteSummary } from "../results.ts";
import type { ReportEvent, Reporter } from "../report-events.ts";

/** GitHub shows at most 10 error and 10 warning annotations per step (50 per job). */
const MAX_ANNOTATIONS = 50;

/** Escape the message of a workflow command (`::error …::MESSAGE`). */
export function escapeData(s: string): string {
  return s.replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
}

/** Escape a property value of a workflow command (`file=…,title=…`). */
export function escapeProperty(s: string): string {
  return escapeData(s).replace(/:/g, "%3A").replace(/,/g, "%2C");
}

/** The line of `file` in a stack trace (the innermost frame in the test file), if any. */
export function lineInFile(stack: string | undefined, file: string): number | undefined {
  if (!stack) return undefined;
  for (const l of stack.split("\n")) {
    const i = l.indexOf(file);
    if (i < 0) continue;
    const m = /^:(\d+)(?::\d+)?/.exec(l.slice(i + file.length));
    if (m) return Number(m[1]);
  }
  return undefined;
}

/** `::error file=…,line=…,title=…::message` (or ::warning), escaped as GitHub requires. */
export function annotation(level: "error" | "warning", props: { file?: string; line?: number; title?: string }, message: string): string {
  const p = [
    props.file !== undefined ? `file=${escapeProperty(props.file)}` : "",
    props.line !== undefined ? `line=${props.line}` : "",
    props.title !== undefined ? `title=${escapeProperty(props.title)}` : "",
  ].filter(Boolean);
  return `::${level}${p.length ? " " + p.join(",") : ""}::${escapeData(message)}`;
}

/**
 * GitHub Actions annotations (on when GITHUB_ACTIONS=true): each failed run an ::error on
 * its test file (at the failing line when the stack names it), each flaky run a ::warning,
 * each file that cannot load an ::error. Written once the suite ends, to stdout, where the
 * runner reads workflow commands.
 */
export class GitHubReporter implements Reporter {
  constructor(
    private readonly out: NodeJS.WritableStream = process.stdout,
    private readonly cwd = process.cwd(),
  ) {}

  report(e: ReportEvent): void {
    if (e.kind === "end") this.annotate(e.summary);
  }

  private annotate(s: SuiteSummary): void {
    const lines: string[] = [];
    for (const e of s.plan.loadErrors) lines.push(annotation("error", { file: this.rel(e.file), title: "cannot load" }, e.error));
    const failed = s.results.filter((r) => r.outcome === "failed");
    const flaky = s.results.filter((r) => r.outcome === "flaky");
    for (const r of [...failed, ...flaky].sort((a, b) => a.run.index - b.run.index || a.run.key.localeCompare(b.run.key))) {
      if (lines.length >= MAX_ANNOTATIONS) break;
      lines.push(this.forRun(r, r.outcome === "flaky" && !s.plan.flakyFails ? "warning" : "error"));
    }
    const left = s.plan.loadErrors.length + failed.length + flaky.length - lines.length;
    if (left > 0) lines.push(annotation("error", { title: "haltpoint" }, `${left} more failed or flaky runs are not annotated; see the job log and the reports`));
    if (lines.length) this.out.write(lines.join("\n") + "\n");
  }

  private forRun(r: RunResult, level: "error" | "warning"): string {
    const file = r.run.test.file;
    const failedAttempt = [...r.attempts].reverse().find((a) => a.outcome === "failed");
    const what = r.outcome === "flaky" ? `FLAKY (passed on attempt ${r.attempts.length}): ` : r.attempts.length > 1 ? `failed ${r.attempts.length} attempts: ` : "";
    const message = `${what}${runMessage(r)}\nlogs: ${r.logDir}`;
    return annotation(level, { file: this.rel(file), line: lineInFile(failedAttempt?.error?.stack, file), title: r.run.key }, message);
  }

  private rel(file: string): string {
    return isAbsolute(file) ? relative(this.cwd, file) || file : file;
  }
}
