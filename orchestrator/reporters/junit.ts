import { create } from "xmlbuilder2";
import type { WorkerEvent } from "../../worker/events.ts";
import type { PlannedRun } from "../plan.ts";
import { runMessage, type Reporter, type RunResult, type SuiteSummary } from "../results.ts";
import { writeReport } from "./atomic-write.ts";
import { formatEvent } from "./format.ts";

/** Keep at most this many log lines of a run for its <system-out>. */
const MAX_LINES = 400;

/**
 * JUnit XML (`--junit FILE`) in the shape CI systems read (Jenkins/GitLab/GitHub
 * test reporters): one <testsuite> per test, one <testcase> per run, <failure> with the
 * message and the run's log.
 */
export class JUnitReporter implements Reporter {
  private lines = new Map<string, string[]>();

  constructor(private readonly file: string) {}

  onEvent(run: PlannedRun, e: WorkerEvent): void {
    const s = formatEvent(run, e);
    if (!s) return;
    let l = this.lines.get(run.key);
    if (!l) this.lines.set(run.key, (l = []));
    l.push(s);
    if (l.length > MAX_LINES) l.splice(0, l.length - MAX_LINES);
  }

  async onEnd(s: SuiteSummary): Promise<void> {
    await writeReport(this.file, this.render(s));
  }

  render(s: SuiteSummary): string {
    const failures = s.results.filter((r) => r.outcome === "failed").length;
    const root = create({ version: "1.0", encoding: "UTF-8" }).ele("testsuites", {
      name: "haltpoint",
      tests: s.results.length + s.plan.loadErrors.length,
      failures,
      errors: s.plan.loadErrors.length,
      time: secs(s.durationMs),
      timestamp: iso(s.startedAt),
    });
    const byTest = new Map<string, RunResult[]>();
    for (const t of s.plan.tests) byTest.set(t.name, []);
    for (const r of s.results) byTest.get(r.run.test.name)?.push(r);
    for (const t of s.plan.tests) {
      const runs = (byTest.get(t.name) ?? []).sort((a, b) => a.run.index - b.run.index);
      if (!runs.length) continue;
      const suite = root.ele("testsuite", {
        name: t.name,
        tests: runs.length,
        failures: runs.filter((r) => r.outcome === "failed").length,
        errors: 0,
        skipped: 0,
        time: secs(runs.reduce((a, r) => a + r.durationMs, 0)),
        timestamp: iso(Math.min(...runs.map((r) => r.startedAt))),
        file: t.file,
      });
      for (const r of runs) {
        const tc = suite.ele("testcase", { name: r.run.key, classname: t.name, time: secs(r.durationMs), file: t.file });
        const log = (this.lines.get(r.run.key) ?? []).join("\n");
        if (r.outcome === "failed") {
          const msg = runMessage(r);
          tc.ele("failure", { message: msg.split("\n")[0], type: r.error?.name ?? "Error" }).txt(
            `${msg}\n\n${r.error?.stack ?? ""}\n\nlogs: ${r.logDir}\n\n${log}`,
          );
        }
        if (log) tc.ele("system-out").txt(log);
      }
    }
    if (s.plan.loadErrors.length) {
      const suite = root.ele("testsuite", { name: "load errors", tests: s.plan.loadErrors.length, failures: 0, errors: s.plan.loadErrors.length, skipped: 0, time: "0", timestamp: iso(s.startedAt) });
      for (const e of s.plan.loadErrors) {
        suite.ele("testcase", { name: e.file, classname: "load", time: "0", file: e.file }).ele("error", { message: e.error, type: "LoadError" }).txt(e.error);
      }
    }
    return root.end({ prettyPrint: true }) + "\n";
  }
}

function secs(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function iso(t: number): string {
  return new Date(t).toISOString().replace(/\.\d+Z$/, "");
}
