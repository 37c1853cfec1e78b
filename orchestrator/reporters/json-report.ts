import type { Reporter, SuiteSummary } from "../results.ts";
import { exitStatus } from "../results.ts";
import { writeReport } from "./atomic-write.ts";

export const JSON_REPORT_VERSION = 1;

/** The machine-readable report (`--json FILE`); `haltpoint merge` will read these back. */
export function buildJsonReport(s: SuiteSummary): object {
  const byTest = new Map<string, { name: string; file: string; runs: object[] }>();
  for (const t of s.plan.tests) byTest.set(t.name, { name: t.name, file: t.file, runs: [] });
  for (const r of [...s.results].sort((a, b) => a.run.index - b.run.index)) {
    byTest.get(r.run.test.name)?.runs.push({
      run: r.run.index,
      key: r.run.key,
      outcome: r.outcome,
      durationMs: Math.round(r.durationMs),
      startedAt: new Date(r.startedAt).toISOString(),
      error: r.error?.message,
      reason: r.reason,
      logDir: r.logDir,
    });
  }
  const passed = s.results.filter((r) => r.outcome === "passed").length;
  return {
    version: JSON_REPORT_VERSION,
    startedAt: new Date(s.startedAt).toISOString(),
    durationMs: Math.round(s.durationMs),
    interrupted: s.interrupted,
    exitStatus: exitStatus(s),
    summary: { runs: s.results.length, passed, failed: s.results.length - passed, notRun: s.notRun.length, loadErrors: s.plan.loadErrors.length },
    tests: [...byTest.values()],
    loadErrors: s.plan.loadErrors,
  };
}

export class JsonReporter implements Reporter {
  constructor(private readonly file: string) {}
  async onEnd(s: SuiteSummary): Promise<void> {
    await writeReport(this.file, JSON.stringify(buildJsonReport(s), null, 2) + "\n");
  }
}
