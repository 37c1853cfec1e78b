import type logUpdateFn from "log-update";
import { colors as pc } from "./colors.ts";
import type { WorkerEvent } from "../../common/events.ts";
import type { PlannedRun } from "../selection/plan.ts";
import type { BreakpointInfo } from "../../hooks/control/control-protocol.ts";
import { breakpointSshLines, haltpointCommand, shellQuote } from "../../hooks/ssh/ssh-lines.ts";
import { runMessage, type RunAttempt, type RunResult, type SuitePlan, type SuiteSummary } from "../results.ts";
import type { ReportEvent, Reporter } from "../report-events.ts";
import { formatEvent, formatResult, formatRetry, formatSlow, seconds } from "./format.ts";
import { flakeStats } from "../flake-stats.ts";
import { formatFlakeStats } from "./flake-summary.ts";
import { formatShard } from "../selection/shard.ts";
import { haltRefusalText, noticeText } from "./failure-text.ts";

export interface TerminalOptions {
  /** Only results, failures and the summary (no per-event lines). */
  quiet: boolean;
  /** Draw a live status line (a TTY, not CI) with this log-update (loaded only then). */
  live: boolean;
  logUpdate?: typeof logUpdateFn;
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

  report(e: ReportEvent): void {
    switch (e.kind) {
      case "plan":
        return this.onPlan(e.plan);
      case "run-start":
        return void this.running.add(e.run.key);
      case "worker-event":
        return this.onEvent(e.run, e.event);
      case "retry":
        return this.onRetry(e.run, e.failed, e.next);
      case "run-end":
        return this.onRunEnd(e.result);
      case "slow":
        return this.line(pc.yellow(formatSlow(e.run, e.attempt, e.elapsedMs, e.slowTimeoutMs)));
      case "notice":
        return this.line(pc.yellow(`haltpoint: ${noticeText(e.notice)}`));
      case "breakpoint":
        return this.onBreakpoint(e.run, e.info);
      case "breakpoint-refused":
        return this.line(pc.yellow(`!!! ${e.run.key}: ${haltRefusalText(e.refusal)}`));
      case "console-refused":
        return this.line(pc.yellow(`!!! ${e.run.key}: ${e.message}`));
      case "breakpoint-end":
        return this.line(pc.magenta(`!!! ${e.run.key}: breakpoint ${e.info.id} released (${e.by})`));
      case "end":
        return this.onEnd(e.summary);
      default:
        // Every kind is said above: a new one is a type error here.
        return e satisfies never;
    }
  }

  private onPlan(plan: SuitePlan): void {
    this.total = plan.runs.length;
    for (const e of plan.loadErrors) this.line(pc.red(`!!! ${e.error}`));
    const runs = plan.stressMs ? `runs for ${seconds(plan.stressMs)}` : `${plan.runs.length} run${plan.runs.length === 1 ? "" : "s"}`;
    const shard = plan.shard ? ` (shard ${formatShard(plan.shard)})` : "";
    this.line(
      `haltpoint: ${plan.tests.length} test${plan.tests.length === 1 ? "" : "s"}${shard}, ${runs}, ` +
        `${plan.jobs} job${plan.jobs === 1 ? "" : "s"}, logs in ${plan.logDir}`,
    );
    if (this.o.live) this.renderTimer = setInterval(() => this.render(), 250).unref();
  }

  private onEvent(run: PlannedRun, e: WorkerEvent): void {
    if (e.t === "bundle") return this.onBundle(run, e);
    if (this.o.quiet) return;
    const s = formatEvent(run, e);
    if (s) this.line(pc.dim(s.slice(0, run.key.length + 1)) + s.slice(run.key.length + 1));
  }

  /** A halted test saved as a bundle: where, and the command that revives it (pasteable). */
  private onBundle(run: PlannedRun, e: Extract<WorkerEvent, { t: "bundle" }>): void {
    const p = `!!! ${run.key}:`;
    const by = e.reqId === undefined ? "" : " (haltpoint save)";
    if (e.error !== undefined) return this.line(pc.red(`${p} could not save a bundle${by}: ${e.error}`));
    const images = e.imageBytes ? `; base image ${(e.imageBytes / 2 ** 20).toFixed(1)} MiB, shared` : "";
    const size = `${((e.bytes ?? 0) / 2 ** 20).toFixed(1)} MiB in ${((e.ms ?? 0) / 1000).toFixed(2)} s${images}`;
    this.line(pc.magenta(`${p} saved as a bundle${by}: ${e.dir} (${size})`));
    for (const s of e.skipped ?? []) this.line(pc.magenta(`${p} not in the bundle: ${s}`));
    for (const n of e.localMachines ?? []) this.line(pc.magenta(`${p} ${n} (local): its files are in the bundle, its processes cannot be carried`));
    if (e.revivable) this.line(pc.magenta(`${p} revive: ${haltpointCommand()} revive ${shellQuote(e.dir)}`));
    else this.line(pc.magenta(`${p} (nothing to revive)`));
  }

  private onRunEnd(r: RunResult): void {
    this.running.delete(r.run.key);
    this.finished++;
    if (r.outcome === "failed") this.failed++;
    const s = formatResult(r);
    if (r.outcome === "flaky") this.line(pc.bold(pc.yellow(s)) + pc.dim(`  logs: ${r.logDir}`));
    else this.line(r.outcome === "passed" ? pc.green(s) : pc.red(s) + pc.dim(`  logs: ${r.logDir}`));
  }

  private onRetry(run: PlannedRun, failed: RunAttempt, next: number): void {
    this.line(pc.yellow(formatRetry(run, failed, next)) + pc.dim(`  logs: ${failed.logDir}`));
  }

  private onBreakpoint(run: PlannedRun, bp: BreakpointInfo): void {
    const p = `!!! ${run.key}:`;
    const lines = [
      `${p} HALTED at breakpoint ${bp.id}: ${bp.reason.split("\n")[0]}`,
      `${p} machines: ${describeMachines(bp)}`,
      `${p} console: telnet ${bp.host} ${bp.port}   (or: ${haltpointCommand()} attach ${bp.id})`,
      ...(bp.token ? [`${p} console token (asked for first; shown only here): ${bp.token}`] : []),
      `${p} sockets: ${bp.socketDir}`,
      ...breakpointSshLines(bp.id, bp.sockets ?? []).map((l) => `${p} ${l}`),
      `${p} release: release() in the console, or ${haltpointCommand()} release ${bp.id}`,
    ];
    for (const l of lines) this.line(pc.magenta(l));
  }

  private onEnd(s: SuiteSummary): void {
    if (this.renderTimer) clearInterval(this.renderTimer);
    if (this.o.live) this.o.logUpdate?.clear();
    const passed = s.results.filter((r) => r.outcome === "passed").length;
    const flaky = s.results.filter((r) => r.outcome === "flaky").length;
    const failed = s.results.length - passed - flaky;
    const lines: string[] = ["", pc.bold("Summary")];
    const slow = [...s.results].sort((a, b) => b.durationMs - a.durationMs).slice(0, 5);
    if (slow.length) lines.push(`  slowest: ${slow.map((r) => `${r.run.key} ${seconds(r.durationMs)}`).join(", ")}`);
    // Hundreds of runs of a flaky test: list the first few here; the statistics below group them all.
    const LIST = 20;
    const failedRuns = s.results.filter((x) => x.outcome === "failed");
    for (const r of failedRuns.slice(0, LIST)) {
      lines.push(pc.red(`  FAIL ${r.run.key}: ${runMessage(r).split("\n")[0]}`), pc.dim(`       logs: ${r.logDir}`));
    }
    if (failedRuns.length > LIST) lines.push(pc.red(`  … ${failedRuns.length - LIST} more failed runs (grouped below)`));
    const flakyRuns = s.results.filter((x) => x.outcome === "flaky");
    for (const r of flakyRuns.slice(0, LIST)) {
      lines.push(pc.bold(pc.yellow(`  FLAKY ${r.run.key}: ${runMessage(r).split("\n")[0]}`)), pc.dim(`       logs: ${r.logDir}`));
    }
    if (flakyRuns.length > LIST) lines.push(pc.bold(pc.yellow(`  … ${flakyRuns.length - LIST} more flaky runs (grouped below)`)));
    const stats = formatFlakeStats(flakeStats(s.results, s.plan.tests.map((t) => t.name)));
    if (stats.lines.length) {
      lines.push(pc.bold(`  ${stats.heading}:`));
      for (const l of stats.lines) lines.push(l.kind === "detail" ? pc.dim(`    ${l.text}`) : l.kind === "group" ? pc.red(`    ${l.text}`) : `    ${l.text}`);
    }
    for (const e of s.plan.loadErrors) lines.push(pc.red(`  LOAD ERROR ${e.error}`));
    const parts = [
      `${passed} passed`,
      flaky ? pc.bold(pc.yellow(`${flaky} flaky`)) + (s.plan.flakyFails ? " (--flaky-fails)" : "") : "",
      `${failed} failed`,
      s.plan.loadErrors.length ? `${s.plan.loadErrors.length} could not load` : "",
      s.notRun.length ? `${s.notRun.length} not run` : "",
    ].filter(Boolean);
    lines.push(`  ${parts.join(", ")} in ${seconds(s.durationMs)}${s.interrupted ? (s.stop?.kind === "superseded" ? " (superseded)" : " (interrupted)") : ""}`);
    this.out.write(lines.join("\n") + "\n");
  }

  private line(s: string): void {
    if (this.o.live) this.o.logUpdate?.clear();
    this.out.write(s + "\n");
    if (this.o.live) this.render();
  }

  private render(): void {
    const el = seconds(Date.now() - this.started);
    const failed = this.failed ? pc.red(` · ${this.failed} failed`) : "";
    this.o.logUpdate?.(pc.cyan(`▶ ${this.finished}${this.total ? `/${this.total}` : ""} done · ${this.running.size} running${failed} · ${el}`));
  }
}

function describeMachines(bp: BreakpointInfo): string {
  if (!bp.machines.length) return "(none)";
  const frozen = new Set(bp.frozen ?? bp.machines);
  return bp.machines.map((m) => `${m} (${frozen.has(m) ? "frozen" : "not running"})`).join(", ");
}
