import logUpdate from "log-update";
import pc from "picocolors";
import type { WorkerEvent } from "../../worker/events.ts";
import type { PlannedRun } from "../plan.ts";
import type { BreakpointInfo } from "../../hooks/control-protocol.ts";
import { runMessage, type Reporter, type RunResult, type SuitePlan, type SuiteSummary } from "../results.ts";
import { formatEvent, formatResult, seconds } from "./format.ts";

export interface TerminalOptions {
  /** Only results, failures and the summary (no per-event lines). */
  quiet: boolean;
  /** Draw a live status line (a TTY, not CI). */
  live: boolean;
  out?: NodeJS.WritableStream;
}

/** The human's view: one prefixed line per event, a live status line, a summary. */
export class TerminalReporter implements Reporter {
  private out: NodeJS.WritableStream;
  private running = new Set<string>();
  private finished = 0;
  private failed = 0;
  private total = 0;
  private started = Date.now();
  private renderTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: TerminalOptions) {
    this.out = o.out ?? process.stdout;
  }

  onPlan(plan: SuitePlan): void {
    this.total = plan.runs.length;
    for (const e of plan.loadErrors) this.line(pc.red(`!!! ${e.error}`));
    this.line(
      `haltpoint: ${plan.tests.length} test${plan.tests.length === 1 ? "" : "s"}, ${plan.runs.length} run${plan.runs.length === 1 ? "" : "s"}, ` +
        `${plan.jobs} job${plan.jobs === 1 ? "" : "s"}, logs in ${plan.logDir}`,
    );
    if (this.o.live) this.renderTimer = setInterval(() => this.render(), 250).unref();
  }

  onRunStart(run: PlannedRun): void {
    this.running.add(run.key);
  }

  onEvent(run: PlannedRun, e: WorkerEvent): void {
    if (this.o.quiet) return;
    const s = formatEvent(run, e);
    if (s) this.line(pc.dim(s.slice(0, run.key.length + 1)) + s.slice(run.key.length + 1));
  }

  onRunEnd(r: RunResult): void {
    this.running.delete(r.run.key);
    this.finished++;
    if (r.outcome === "failed") this.failed++;
    const s = formatResult(r);
    this.line(r.outcome === "passed" ? pc.green(s) : pc.red(s) + pc.dim(`  logs: ${r.logDir}`));
  }

  onBreakpoint(run: PlannedRun, bp: BreakpointInfo): void {
    const p = `!!! ${run.key}:`;
    const lines = [
      `${p} HALTED at breakpoint ${bp.id}: ${bp.reason.split("\n")[0]}`,
      `${p} machines: ${describeMachines(bp)}`,
      `${p} console: telnet ${bp.host} ${bp.port}   (or: haltpoint attach ${bp.id})`,
      `${p} sockets: ${bp.socketDir}`,
      `${p} release: release() in the console, or haltpoint release ${bp.id}`,
    ];
    for (const l of lines) this.line(pc.magenta(l));
  }

  onBreakpointRefused(run: PlannedRun, reason: string): void {
    this.line(pc.yellow(`!!! ${run.key}: ${reason}`));
  }

  onBreakpointEnd(run: PlannedRun, bp: BreakpointInfo, by: string): void {
    this.line(pc.magenta(`!!! ${run.key}: breakpoint ${bp.id} released (${by})`));
  }

  onNotice(msg: string): void {
    this.line(pc.yellow(`haltpoint: ${msg}`));
  }

  onEnd(s: SuiteSummary): void {
    if (this.renderTimer) clearInterval(this.renderTimer);
    if (this.o.live) logUpdate.clear();
    const passed = s.results.filter((r) => r.outcome === "passed").length;
    const failed = s.results.length - passed;
    const lines: string[] = ["", pc.bold("Summary")];
    const slow = [...s.results].sort((a, b) => b.durationMs - a.durationMs).slice(0, 5);
    if (slow.length) lines.push(`  slowest: ${slow.map((r) => `${r.run.key} ${seconds(r.durationMs)}`).join(", ")}`);
    for (const r of s.results.filter((x) => x.outcome === "failed")) {
      lines.push(pc.red(`  FAIL ${r.run.key}: ${runMessage(r).split("\n")[0]}`), pc.dim(`       logs: ${r.logDir}`));
    }
    for (const e of s.plan.loadErrors) lines.push(pc.red(`  LOAD ERROR ${e.error}`));
    const parts = [
      `${passed} passed`,
      `${failed} failed`,
      s.plan.loadErrors.length ? `${s.plan.loadErrors.length} could not load` : "",
      s.notRun.length ? `${s.notRun.length} not run` : "",
    ].filter(Boolean);
    lines.push(`  ${parts.join(", ")} in ${seconds(s.durationMs)}${s.interrupted ? " (interrupted)" : ""}`);
    this.out.write(lines.join("\n") + "\n");
  }

  private line(s: string): void {
    if (this.o.live) logUpdate.clear();
    this.out.write(s + "\n");
    if (this.o.live) this.render();
  }

  private render(): void {
    const el = seconds(Date.now() - this.started);
    const failed = this.failed ? pc.red(` · ${this.failed} failed`) : "";
    logUpdate(pc.cyan(`▶ ${this.finished}/${this.total} done · ${this.running.size} running${failed} · ${el}`));
  }
}

function describeMachines(bp: BreakpointInfo): string {
  if (!bp.machines.length) return "(none)";
  const frozen = new Set(bp.frozen ?? bp.machines);
  return bp.machines.map((m) => `${m} (${frozen.has(m) ? "frozen" : "not running"})`).join(", ");
}
