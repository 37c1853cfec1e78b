import { realpathSync, rmSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { relative, resolve } from "node:path";
import { checkReportPath, ensureWritableDir, makePrivateDir } from "../settings/output-paths.ts";
import { describeThrown } from "../../common/describe-thrown.ts";
import { listenForLateErrors } from "../scheduling/late-error-notices.ts";
import { makeStateRoot, sweepAbandonedStateRoots } from "../settings/state-root.ts";
import { fileSystemType, IN_MEMORY_FS } from "../settings/file-system-type.ts";
import { discoverTestFiles } from "../selection/discovery.ts";
import { StressRuns, expandRuns, findDuplicateNames, type PlannedRun } from "../selection/plan.ts";
import { assignDirNames } from "../../common/run-dir-names.ts";
import { stressRunNumber } from "../selection/shard-runs.ts";
import { selectTests } from "../selection/selection.ts";
import { applyTestSettings } from "../settings/test-settings.ts";
import { createPool } from "../scheduling/pool.ts";
import { ProcessLedger } from "../scheduling/process-ledger.ts";
import { takeAheadPolicy } from "../scheduling/take-ahead.ts";
import { REPORT_WRITE_EXIT_STATUS, exitStatus, type SuitePlan, type SuiteSummary } from "../results.ts";
import { ReporterSet, type Reporter } from "../report-events.ts";
import { AttemptLines } from "../reporters/attempt-lines.ts";
import { JsonReporter } from "../reporters/json-report.ts";
import { RunLogReporter } from "../reporters/run-log.ts";
import { TerminalReporter } from "../reporters/terminal.ts";
import { Scheduler } from "../scheduling/scheduler.ts";
import { prepareQemu } from "../scheduling/prepare-qemu.ts";
import { sandboxNotice } from "../../vm/local/sandbox.ts";
import { removeStartupSignalHandlers } from "../startup-signals.ts";
import { DEFAULT_CPU_OVERCOMMIT, ResourceBudget } from "../scheduling/resource-budget.ts";
import { BreakpointBroker } from "../../hooks/breakpoints/breakpoint-broker.ts";
import { ControlServer } from "../../hooks/control/control-server.ts";
import { controlDir } from "../../hooks/control/control-paths.ts";
import { handleControl } from "./control-requests.ts";
import { defaultLogDir, keptStateRoot, saveBreakpointsDir, type RunOptions } from "./run-options.ts";
import { bestEffort, stderrTeardownLog } from "../../common/teardown.ts";
import type { StopCause } from "../../common/failure-kinds.ts";

/** `haltpoint run`: discover, collect, schedule, report. Resolves with the exit status. */
export async function runCommand(o: RunOptions): Promise<number> {
  const startedAt = Date.now();
  // Bad output paths fail the run before any test starts (exit 2), not each test later.
  const logDir = ensureWritableDir(o.logDir ?? defaultLogDir(), "--log-dir");
  makePrivateDir(logDir);
  if (o.json) checkReportPath(o.json, "--json");
  if (o.junit) checkReportPath(o.junit, "--junit");
  if (o.html) checkReportPath(o.html, "--html");
  // An explicit state root must work too (else machines fail one by one).
  if (process.env.HALTPOINT_STATE_DIR) ensureWritableDir(process.env.HALTPOINT_STATE_DIR, "HALTPOINT_STATE_DIR");
  // Bundles hold guest memory: their directory is the owner's only.
  // (The default one, under the log dir, is made when a first bundle is saved.)
  const saveDir = saveBreakpointsDir(o, logDir);
  if (typeof o.saveBreakpoints === "string") {
    ensureWritableDir(saveDir!, "--save-breakpoints");
    makePrivateDir(saveDir!);
  }
  const files = await discoverTestFiles(o.paths.length ? o.paths : ["."]);
  // Queue mode's modules (BullMQ, ioredis) load while the tests are collected: a host starts
  // taking runs that much sooner (measured in bench:fleet, where every host pays it).
  const queueModule = o.queue ? import("../queue/join-host.ts") : undefined;
  queueModule?.catch(() => {}); // its error, if any, is thrown where it is awaited

  const reporters: Reporter[] = [];
  if (o.terminal !== false) {
    const live = o.live !== false && Boolean(process.stdout.isTTY) && !process.env.CI;
    // Reporters' libraries load only when used: the main thread's footprint is measured.
    const logUpdate = live ? (await import("log-update")).default : undefined;
    reporters.push(new TerminalReporter({ quiet: o.quiet, live, logUpdate }));
  }
  // Its notices go to every reporter (the set is made below).
  reporters.push(new RunLogReporter((n) => out.notice(n), IN_MEMORY_FS.has(fileSystemType(realpathSync(logDir)).name)));
  // One collector of each attempt's output lines for the reports that show them, before them in the stream.
  const lines = o.junit || o.json || o.html || o.queue ? AttemptLines.forReports({ junit: Boolean(o.junit) }) : undefined;
  if (lines) reporters.push(lines);
  if (o.junit) reporters.push(new (await import("../reporters/junit.ts")).JUnitReporter(o.junit, lines!));
  if (o.json) reporters.push(new JsonReporter(o.json, lines!));
  if (o.html) reporters.push(new (await import("../reporters/html/html-reporter.ts")).HtmlReporter(o.html, lines!));
  // Versions and host, for the reports that show them (one `qemu --version`, at the start).
  const host = o.json || o.html ? (await import("../../vm/host-facts.ts")).hostFacts() : undefined;
  if (o.terminal !== false && process.env.GITHUB_ACTIONS === "true") reporters.push(new (await import("../reporters/github.ts")).GitHubReporter());
  reporters.push(...(o.reporters ?? []));
  const out = new ReporterSet(reporters);

  const ledger = new ProcessLedger();
  // Signals from here on stop the run (before here the bin's startup handler exits 130).
  // Until the scheduler exists one is only remembered: it then stops the run before any test.
  let scheduler: Scheduler | undefined;
  let startupSignal: NodeJS.Signals | undefined;
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts === 1) {
      out.notice({ kind: "signal", signal: sig, again: false });
      if (scheduler) scheduler.interrupt(sig);
      else startupSignal = sig;
    } else {
      out.notice({ kind: "signal", signal: sig, again: true });
      scheduler?.killNow();
      ledger.killAll();
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  removeStartupSignalHandlers();
  const onExit = (): void => ledger.killAll();
  process.on("exit", onExit);
  const swept = sweepAbandonedStateRoots();
  if (swept.length) out.notice({ kind: "swept-state-dirs", dirs: swept });
  const stateRoot = makeStateRoot();
  const maxFrozen = o.maxFrozen ?? 4;
  const memoryMiB = o.memoryMiB ?? Math.floor((totalmem() / 2 ** 20) * 0.8);
  let stopAheadLedger = (): void => {};
  // Halted tests keep their worker thread but give back their --jobs slot: room for both.
  const pool = createPool({ threads: o.jobs, extraThreads: maxFrozen, workerMemoryMb: o.workerMemoryMb });
  // A worker error outside any task must not end the run (an unhandled 'error' event would).
  pool.on("error", (e: unknown) => out.notice({ kind: "pool-error", message: describeThrown(e instanceof Error ? e.message : e) }));
  const lateErrors = listenForLateErrors((n) => out.notice({ kind: "late-error", run: n.runKey, errorKind: n.kind, message: n.message }));
  const broker = new BreakpointBroker<PlannedRun>(
    {
      startPort: o.debugPort ?? 4444,
      host: o.debugBind ?? "127.0.0.1",
      maxFrozen,
      ttlMs: (o.freezeTtl ?? 30 * 60) * 1000,
      socketRoot: controlDir(),
    },
    (e) => out.emit(e),
  );
  // `haltpoint ls / attach / release` reach this run through its control socket.
  const control = await ControlServer.listen((req) => handleControl(broker, req)).catch((e: Error) => {
    out.notice({ kind: "no-control-socket", message: e.message });
    return undefined;
  });
  scheduler = new Scheduler({
    pool,
    jobs: o.jobs,
    reporters: out,
    ledger,
    logDir,
    stateRoot,
    defaultBackend: o.backend,
    abortGraceMs: o.abortGrace * 1000,
    untilFail: o.untilFail,
    ...(o.maxFail !== undefined ? { maxFail: o.maxFail } : {}),
    retries: o.retries,
    flakyFails: o.flakyFails ?? false,
    broker,
    debugHook: o.debugHook ?? false,
    sshBackdoor: o.sshBackdoor,
    sshThaws: o.sshThaws ?? true,
    keepStateRoot: o.keepMachineState ? keptStateRoot() : undefined,
    saveBreakpoints: saveDir,
    ...(o.signKey ? { signKey: resolve(o.signKey) } : {}),
    budget: new ResourceBudget({
      jobs: o.jobs,
      memoryMiB,
      cores: o.cores ?? availableParallelism(),
      cpuOvercommit: o.cpuOvercommit ?? DEFAULT_CPU_OVERCOMMIT,
    }),
  });

  if (startupSignal) scheduler.interrupt(startupSignal);
  let closeQueue: () => Promise<void> = async () => {};
  const onStop = (): void => scheduler?.stop(o.stop!.reason as StopCause);
  if (o.stop?.aborted) onStop();
  o.stop?.addEventListener("abort", onStop);

  try {
    const { tests, loadErrors } = await scheduler.collect(files);
    loadErrors.push(...findDuplicateNames(tests));
    assignDirNames(tests);
    const runnable = applyTestSettings(
      tests.filter((t) => !loadErrors.some((e) => e.file === t.file)),
      o.testSettings ?? { strong: {}, overrides: [], weak: {} },
    );
    const sel = await selectTests(runnable, { filter: o.filter, shard: o.shard, durations: o.durations, rerunFailed: o.rerunFailed, repeat: o.repeat, stress: Boolean(o.stressDuration), where: (o.paths.length ? o.paths : ["."]).join(", ") });
    const selected = sel.tests;
    for (const text of sel.notices) out.notice({ kind: "info", source: "selection", text });
    if (!selected.length && !loadErrors.length) out.notice({ kind: "no-tests", reason: sel.emptyReason ?? "none", passWithNoTests: o.passWithNoTests ?? false });
    // --stress-duration: runs are made as slots free until the time is up (the plan has none yet).
    const stress = o.stressDuration ? new StressRuns(selected, o.stressDuration * 1000, (i) => stressRunNumber(i, sel.shard)) : undefined;
    const runs = stress ? [] : (sel.runs ?? expandRuns(selected, o.repeat));
    // A flake hunt's workers start their next run's machines while a run runs (worker/machines-ahead.ts).
    const aheadWanted = o.takeAhead === false || o.keepMachineState || o.queue ? undefined : takeAheadPolicy({ tests: selected, runs, stress: Boolean(stress), jobs: o.jobs, memoryMiB });
    if (aheadWanted) {
      const channel = `haltpoint: machines taken ahead for ${stateRoot}`;
      scheduler.takeAhead = { channel, wanted: aheadWanted };
      stopAheadLedger = ledger.listenForAhead(channel);
    }
    const rerunOf = o.rerunFailed ? await rerunSource(o.rerunFailed) : undefined;
    const plan: SuitePlan = {
      tests: selected,
      runs,
      loadErrors,
      jobs: o.jobs,
      logDir,
      flakyFails: o.flakyFails ?? false,
      ...(o.retries !== undefined ? { retries: o.retries } : {}),
      ...(sel.shard ? { shard: sel.shard } : {}),
      ...(o.passWithNoTests ? { passWithNoTests: true } : {}),
      ...(rerunOf ? { rerunOf } : {}),
      ...(stress ? { stressMs: o.stressDuration! * 1000 } : {}),
      ...(host ? { host: await host } : {}),
    };
    // Queue mode: this host takes its runs from the queue, as other hosts do (orchestrator/queue/).
    let queueHost: import("../queue/host-worker.ts").QueueHost | undefined;
    if (o.queue && selected.length) {
      const { joinAsHost } = await queueModule!;
      queueHost = await joinAsHost(
        {
          queue: o.queue,
          host: o.queueHost,
          leaseSeconds: o.queueLease ?? 30,
          jobs: o.jobs,
          logDir,
          repeat: o.repeat,
          retries: o.retries,
          untilFail: o.untilFail,
          maxFail: o.maxFail,
          flakyFails: o.flakyFails ?? false,
          passWithNoTests: o.passWithNoTests ?? false,
          durations: o.durations,
          lines: lines!,
        },
        selected,
        runs,
        (text) => out.notice({ kind: "info", source: "queue", text }),
      );
      closeQueue = () => queueHost!.close();
      out.add(queueHost);
      const sched = scheduler;
      // Another host's --until-fail/--max-fail (or Redis gone): start nothing more here; runs in flight finish.
      queueHost.onStop = (stop) => {
        const first = sched.stopReason === undefined;
        sched.stopReason ??= stop;
        sched.stopAdmission();
        if (first && stop.kind !== "interrupted") out.notice({ kind: "stopped", stop });
      };
    }
    out.emit({ kind: "plan", plan });
    const localNotice = selected.some((t) => t.nodes.some((n) => n.backend === "local")) ? sandboxNotice() : undefined;
    if (localNotice) out.notice({ kind: "info", source: "sandbox", text: localNotice });
    if (selected.some((t) => t.nodes.some((n) => n.backend === "qemu"))) {
      try {
        const debian = selected.flatMap((t) => t.nodes.flatMap((n) => (n.debian ? [{ spec: n.debian, who: `${relative(process.cwd(), t.file) || t.file}: node '${n.name}'` }] : [])));
        scheduler.qemu = o.qemuRuntime ?? (await prepareQemu(o.accel ?? "auto", (text) => out.notice({ kind: "info", source: "qemu", text }), { snapshotBoot: o.snapshotBoot, debian, previous: o.previousQemu }));
        o.onQemuRuntime?.(scheduler.qemu);
      } catch (e) {
        scheduler.qemuUnavailable = (e as Error).message;
        out.notice({ kind: "qemu-unavailable", message: scheduler.qemuUnavailable });
      }
    }
    if (queueHost) queueHost.start();
    const results = scheduler.isStopping ? [] : await scheduler.runAll(queueHost ?? stress ?? runs);
    const done = new Set(results.map((r) => r.run.key));
    // A queue host made the runs it took (the others are other hosts' or still queued).
    const made = queueHost ? results.map((r) => r.run) : stress ? stress.made : runs;
    const summary: SuiteSummary = {
      plan: stress ? { ...plan, runs: made } : plan,
      results,
      notRun: made.filter((r) => !done.has(r.key)),
      interrupted: scheduler.interruptedWork,
      ...(scheduler.stopReason ? { stop: scheduler.stopReason } : {}),
      startedAt,
      durationMs: Date.now() - startedAt,
    };
    await out.end(summary);
    for (const f of out.writeFailures) console.error(`haltpoint: ${f}`);
    if (queueHost) {
      await closeQueue();
      closeQueue = async () => {};
      if (queueHost.fatal) {
        console.error(`haltpoint: queue ${queueHost.fatal}${o.json ? ` and ${o.json}` : ""}`);
        return QUEUE_LOST_EXIT_STATUS;
      }
    }
    // Stopped by another host's --until-fail/--max-fail (or by queue report, no host left): the suite failed.
    const elsewhere = queueHost?.stoppedElsewhereLine();
    if (elsewhere) console.error(`haltpoint: ${elsewhere}`);
    const status = elsewhere && exitStatus(summary) === 0 ? 1 : exitStatus(summary);
    return out.writeFailures.length && status !== 130 && status !== 2 ? REPORT_WRITE_EXIT_STATUS : status;
  } finally {
    await closeQueue();
    o.stop?.removeEventListener("abort", onStop);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await broker.close();
    if (control) await bestEffort(stderrTeardownLog, "closing the control socket", control.close());
    await bestEffort(stderrTeardownLog, "stopping the worker pool", pool.destroy());
    lateErrors.close();
    ledger.killAll();
    stopAheadLedger();
    process.off("exit", onExit);
    // A finally that throws would replace the run's exit status: the run's result stands, the leftover is a line.
    await bestEffort(stderrTeardownLog, `removing the state directory ${stateRoot}`, () => rmSync(stateRoot, { recursive: true, force: true }));
  }
}

/** Queue mode: the queue's Redis went away mid-suite (the runs this host finished are in its reports). */
export const QUEUE_LOST_EXIT_STATUS = 5;

/** The report a --rerun-failed run continues: `haltpoint merge` appends this run's attempts to its runs. */
async function rerunSource(file: string): Promise<{ report: string; startedAt: string }> {
  const { readReport } = await import("./merge.ts");
  return { report: resolve(file), startedAt: (await readReport(file)).report.startedAt };
}
