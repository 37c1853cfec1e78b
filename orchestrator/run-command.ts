import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { discoverTestFiles } from "./discovery.ts";
import { expandRuns, findDuplicateNames } from "./plan.ts";
import { createPool } from "./pool.ts";
import { ProcessLedger } from "./process-ledger.ts";
import { ReporterSet, exitStatus, type Reporter, type SuitePlan, type SuiteSummary } from "./results.ts";
import { JUnitReporter } from "./reporters/junit.ts";
import { JsonReporter } from "./reporters/json-report.ts";
import { RunLogReporter } from "./reporters/run-log.ts";
import { TerminalReporter } from "./reporters/terminal.ts";
import { Scheduler } from "./scheduler.ts";

export interface RunOptions {
  paths: string[];
  jobs: number;
  backend: "local" | "qemu";
  repeat: number;
  untilFail: boolean;
  filter?: RegExp;
  logDir?: string;
  junit?: string;
  json?: string;
  quiet: boolean;
  workerMemoryMb?: number;
  /** Seconds a stopped test gets to tear down before its worker is killed. */
  abortGrace: number;
  /** Extra reporters (tests and benches observe a run through these). */
  reporters?: Reporter[];
  /** Print to the terminal (false in benches). */
  terminal?: boolean;
}

/**
 * Where machines keep their state (sandbox directories, sockets): short, because UNIX
 * socket paths must fit in 107 bytes, and outside /tmp, because each local sandbox gets a
 * private /tmp mounted over the host's.
 */
function makeStateRoot(): string {
  for (const base of [process.env.HALTPOINT_STATE_DIR, "/var/tmp", tmpdir()]) {
    if (!base) continue;
    try {
      return mkdtempSync(join(base, "hp-"));
    } catch {
      /* not writable: next */
    }
  }
  throw new Error("cannot create a state directory under /var/tmp or the temp directory");
}

export function defaultLogDir(now = new Date()): string {
  return join(".haltpoint", "runs", now.toISOString().replace(/[:.]/g, "-"));
}

/** `haltpoint run`: discover, collect, schedule, report. Resolves with the exit status. */
export async function runCommand(o: RunOptions): Promise<number> {
  const startedAt = Date.now();
  const logDir = resolve(o.logDir ?? defaultLogDir());
  const files = await discoverTestFiles(o.paths.length ? o.paths : ["."]);

  const reporters: Reporter[] = [];
  if (o.terminal !== false) {
    const live = Boolean(process.stdout.isTTY) && !process.env.CI;
    reporters.push(new TerminalReporter({ quiet: o.quiet, live }));
  }
  reporters.push(new RunLogReporter());
  if (o.junit) reporters.push(new JUnitReporter(o.junit));
  if (o.json) reporters.push(new JsonReporter(o.json));
  reporters.push(...(o.reporters ?? []));
  const out = new ReporterSet(reporters);

  const ledger = new ProcessLedger();
  const onExit = (): void => ledger.killAll();
  process.on("exit", onExit);
  const stateRoot = makeStateRoot();
  const pool = createPool({ threads: o.jobs, workerMemoryMb: o.workerMemoryMb });
  const scheduler = new Scheduler({
    pool,
    jobs: o.jobs,
    reporters: out,
    ledger,
    logDir,
    stateRoot,
    defaultBackend: o.backend,
    abortGraceMs: o.abortGrace * 1000,
    untilFail: o.untilFail,
  });

  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts === 1) {
      out.onNotice(`${sig}: starting no more tests, stopping the running ones (again to kill them now)`);
      scheduler.interrupt(`interrupted (${sig})`);
    } else {
      out.onNotice(`${sig} again: killing the running tests`);
      scheduler.killNow();
      ledger.killAll();
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const { tests, loadErrors } = await scheduler.collect(files);
    loadErrors.push(...findDuplicateNames(tests));
    const runnable = tests.filter((t) => !loadErrors.some((e) => e.file === t.file));
    const runs = expandRuns(runnable, o.repeat, o.filter);
    const selected = runnable.filter((t) => runs.some((r) => r.test === t));
    const plan: SuitePlan = { tests: selected, runs, loadErrors, jobs: o.jobs, logDir };
    out.onPlan(plan);
    const results = scheduler.isStopping ? [] : await scheduler.runAll(runs);
    const done = new Set(results.map((r) => r.run.key));
    const summary: SuiteSummary = {
      plan,
      results,
      notRun: runs.filter((r) => !done.has(r.key)),
      interrupted: interrupts > 0,
      startedAt,
      durationMs: Date.now() - startedAt,
    };
    await out.onEnd(summary);
    return exitStatus(summary);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await pool.destroy().catch(() => {});
    ledger.killAll();
    process.off("exit", onExit);
    rmSync(stateRoot, { recursive: true, force: true });
  }
}
