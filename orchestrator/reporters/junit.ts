import { create } from "xmlbuilder2";
import type { XMLBuilder } from "xmlbuilder2/lib/interfaces.js";
import type { PlannedRun } from "../selection/plan.ts";
import { failureMessage, type RunAttempt, type RunResult, type SuiteSummary } from "../results.ts";
import type { ReportEvent, Reporter } from "../report-events.ts";
import { writeReport } from "./atomic-write.ts";
import type { AttemptLines } from "./attempt-lines.ts";

/**
 * JUnit XML (`--junit FILE`) in the shape CI systems read (the Jenkins/Ant "JUnit.xsd" that
 * Jenkins, GitLab and GitHub test reporters accept): one <testsuite> per test, one
 * <testcase> per run, <failure> with the message and the run's log. Retries are written
 * as Maven Surefire (and cargo-nextest) write them:
 * - a flaky run (failed, then passed) has no <failure>, one <flakyFailure> per failed attempt;
 * - a run that failed on every attempt has <failure> (the first attempt) and one
 *   <rerunFailure> per retry.
 * Each <flakyFailure>/<rerunFailure> carries <stackTrace> and that attempt's <system-out>.
 * The log lines of each attempt (passed ones too) come from the shared `lines`, which
 * `haltpoint merge` fills from JSON reports.
 */
export class JUnitReporter implements Reporter {
  constructor(
    private readonly file: string,
    private readonly lines: AttemptLines,
  ) {}

  async report(e: ReportEvent): Promise<void> {
    if (e.kind !== "end") return;
    await writeReport(this.file, this.render(e.summary), "--junit report");
  }

  render(s: SuiteSummary): string {
    const failures = s.results.filter((r) => r.outcome === "failed").length;
    const root = create({ version: "1.0", encoding: "UTF-8" }).ele("testsuites", {
      name: "haltpoint",
      tests: s.results.length + s.notRun.length + s.plan.loadErrors.length,
      failures,
      errors: s.plan.loadErrors.length,
      time: secs(s.durationMs),
    });
    const byTest = new Map<string, RunResult[]>();
    for (const t of s.plan.tests) byTest.set(t.name, []);
    for (const r of s.results) byTest.get(r.run.test.name)?.push(r);
    const notRunByTest = new Map<string, PlannedRun[]>();
    for (const n of s.notRun) notRunByTest.set(n.test.name, [...(notRunByTest.get(n.test.name) ?? []), n]);
    // Runs that never started are there too, as skipped: a CI must see that they did not pass.
    const notRunWhy = s.interrupted ? "not run: the run was interrupted before it started" : "not run: no more runs were started (--max-fail, --until-fail or --stress-duration)";
    for (const t of s.plan.tests) {
      const runs = (byTest.get(t.name) ?? []).sort((a, b) => a.run.index - b.run.index);
      const notRun = (notRunByTest.get(t.name) ?? []).sort((a, b) => a.index - b.index);
      if (!runs.length && !notRun.length) continue;
      const suite = root.ele("testsuite", {
        name: t.name,
        tests: runs.length + notRun.length,
        failures: runs.filter((r) => r.outcome === "failed").length,
        errors: 0,
        skipped: notRun.length,
        time: secs(runs.reduce((a, r) => a + r.durationMs, 0)),
        timestamp: iso(runs.length ? Math.min(...runs.map((r) => r.startedAt)) : s.startedAt),
        file: t.file,
      });
      for (const r of runs) {
        const tc = suite.ele("testcase", { name: r.run.key, classname: t.name, time: secs(r.durationMs), file: t.file });
        const failed = r.attempts.filter((a) => a.outcome === "failed");
        if (r.outcome === "failed") {
          const [first, ...reruns] = failed;
          const log = this.log(r, first!);
          tc.ele("failure", { message: firstLine(message(first!)), type: type(first!) }).txt(`${details(first!)}${log ? `\n\n${log}` : ""}`);
          for (const a of reruns) this.attemptElement(tc, "rerunFailure", r, a);
        } else if (r.outcome === "flaky") {
          for (const a of failed) this.attemptElement(tc, "flakyFailure", r, a);
        }
        const log = this.log(r, r.attempts.at(-1)!);
        if (log) tc.ele("system-out").txt(log);
      }
      for (const n of notRun) {
        suite.ele("testcase", { name: n.key, classname: t.name, time: "0.000", file: t.file }).ele("skipped", { message: notRunWhy });
      }
    }
    if (s.plan.loadErrors.length) {
      const suite = root.ele("testsuite", { name: "load errors", tests: s.plan.loadErrors.length, failures: 0, errors: s.plan.loadErrors.length, skipped: 0, time: "0.000", timestamp: iso(s.startedAt) });
      for (const e of s.plan.loadErrors) {
        suite.ele("testcase", { name: e.file, classname: "load", time: "0.000", file: e.file }).ele("error", { message: firstLine(e.error), type: "LoadError" }).txt(e.error);
      }
    }
    return root.end({ prettyPrint: true }) + "\n";
  }

  /** <flakyFailure>/<rerunFailure>: Surefire's shape, <stackTrace> then <system-out>. */
  private attemptElement(tc: XMLBuilder, name: "flakyFailure" | "rerunFailure", r: RunResult, a: RunAttempt): void {
    const el = tc.ele(name, { message: firstLine(message(a)), type: type(a) });
    el.ele("stackTrace").txt(details(a));
    const log = this.log(r, a);
    if (log) el.ele("system-out").txt(log);
  }

  private log(r: RunResult, a: RunAttempt): string {
    return this.lines.get(r.run.key, a.attempt).join("\n");
  }
}

function message(a: RunAttempt): string {
  return failureMessage(a);
}

function type(a: RunAttempt): string {
  return a.error?.name ?? "Error";
}

function details(a: RunAttempt): string {
  const stack = a.error?.stack ? `\n\n${a.error.stack}` : "";
  return `${message(a)}${stack}\n\nattempt ${a.attempt}, logs: ${a.logDir}`;
}

function firstLine(s: string): string {
  return s.split("\n")[0] ?? "";
}

function secs(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function iso(t: number): string {
  return new Date(t).toISOString().replace(/\.\d+Z$/, "");
}
