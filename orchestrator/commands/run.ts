import { realpathSync, rmSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { join, relative, resolve } from "node:path";
import { checkReportPath, ensureWritableDir, makePrivateDir } from "../settings/output-paths.ts";
import { describeThrown } from "../../common/describe-thrown.ts";
import { listenForLateErrors } from "../scheduling/late-error-notices.ts";
import { makeStateRoot, sweepAbandonedStateRoots } from "../settings/state-root.ts";
import { fileSystemType, IN_MEMORY_FS } from "../settings/file-system-type.ts";
import { discoverTestFiles } from "../selection/discovery.ts";
import { StressRuns, expandRuns, findDuplicateNames } from "../selection/plan.ts";
import { assignDirNames } from "../../common/run-dir-names.ts";
import { stressRunNumber } from "../selection/shard-runs.ts";
import { selectTests, type ShardSpec } from "../selection/selection.ts";
import { applyTestSettings, type SettingLayers } from "../settings/test-settings.ts";
import { createPool } from "../scheduling/pool.ts";
import { ProcessLedger } from "../scheduling/process-ledger.ts";
import { REPORT_WRITE_EXIT_STATUS, ReporterSet, exitStatus, type Reporter, type SuitePlan, type SuiteSummary } from "../results.ts";
import { JsonReporter } from "../reporters/json-report.ts";
import { RunLogReporter } from "../reporters/run-log.ts";
import { TerminalReporter } from "../reporters/terminal.ts";
import { Scheduler } from "../scheduling/scheduler.ts";
import { prepareQemu } from "../scheduling/prepare-qemu.ts";
import type { QemuRuntime } from "../../vm/qemu/qemu-runtime.ts";
import { sandboxNotice } from "../../vm/local/sandbox.ts";
import { removeStartupSignalHandlers } from "../startup-signals.ts";
import { DEFAULT_CPU_OVERCOMMIT, ResourceBudget } from "../scheduling/resource-budget.ts";
import { BreakpointBroker } from "../../hooks/breakpoints/breakpoint-broker.ts";
import { ControlServer } from "../../hooks/control/control-server.ts";
import { controlDir } from "../../hooks/control/control-paths.ts";
import type { ControlReply, ControlRequest } from "../../hooks/control/control-protocol.ts";
import { bestEffort, stderrTeardownLog } from "../../common/teardown.ts";
import type { StopCause } from "../../common/failure-kinds.ts";

export interface RunOptions {
  paths: string[];
  jobs: number;
  backend: "local" | "qemu";
  repeat: number;
  untilFail: boolean;
  /** Start no more runs after this many failed runs (--max-fail). */
  maxFail?: number;
  /** A run that selects no test passes (--pass-with-no-tests); else it exits 4. */
  passWithNoTests?: boolean;
  /** Earlier JSON reports: --shard balances by their durations (--durations). */
  durations?: string[];
  /** Run again only the failed and flaky runs of this JSON report (--rerun-failed). */
  rerunFailed?: string;
  /** Per-test retries, timeouts and slow timeouts from the CLI, environment and config file. */
  testSettings?: SettingLayers;
  /** Retries of a failed run for every test (--retries; default: each test's `retries`). */
  retries?: number;
  /** A flaky run fails the suite (--flaky-fails). */
  flakyFails?: boolean;
  /** Seconds: repeat the runs until this much time is up (--stress-duration). */
  stressDuration?: number;
  /** Run only this slice of the suite (--shard K/N, auto, auto/N). */
  shard?: ShardSpec;
  filter?: RegExp;
  logDir?: string;
  junit?: string;
  json?: string;
  /** The HTML report (--html FILE). */
  html?: string;
  quiet: boolean;
  workerMemoryMb?: number;
  /** Host budget for qemu machines (default: 80% of RAM, every core). */
  memoryMiB?: number;
  cores?: number;
  /** vCPUs admitted per core (--cpu-overcommit; default DEFAULT_CPU_OVERCOMMIT). */
  cpuOvercommit?: number;
  /** Seconds a stopped test gets to tear down before its worker is killed. */
  abortGrace: number;
  /** Accelerator for qemu machines (--accel). */
  accel?: "auto" | "kvm" | "tcg";
  /** Halt failing tests at a breakpoint (--debug-hook). */
  debugHook?: boolean;
  /** Save tests that halt as bundles in this dir and release them (--save-breakpoints); true: the default dir. Does not turn the debug hook on. */
  saveBreakpoints?: string | boolean;
  /** --sign-key: sign saved bundles with this ed25519 private key (PEM), e.g. a CI job's. */
  signKey?: string;
  /** SSH backdoor sockets (--ssh-backdoor, --no-ssh-backdoor); default: each test's, else on with the debug hook. */
  sshBackdoor?: boolean;
  /** Connecting to a frozen machine's SSH socket thaws it (--ssh-thaws, default true). */
  sshThaws?: boolean;
  /** Keep machine state across runs in .haltpoint/state/<test>/<machine> (--keep-machine-state). */
  keepMachineState?: boolean;
  /** Start qemu machines of haltpoint's image from a saved snapshot (default true; --no-snapshot-boot). */
  snapshotBoot?: boolean;
  debugPort?: number;
  debugBind?: string;
  maxFrozen?: number;
  /** Seconds until a forgotten breakpoint is released (--freeze-ttl). */
  freezeTtl?: number;
  /** Use these kernel, initrd and accelerator instead of building the image and probing KVM (`haltpoint revive`). */
  qemuRuntime?: QemuRuntime;
  /** Queue mode: take runs from this queue (redis://[:PASSWORD@]HOST:PORT/NAME) with other hosts (--queue). */
  queue?: string;
  /** This host's name in a queue's reports (--queue-host; default hostname-pid). */
  queueHost?: string;
  /** Seconds a run stays leased to a host that died before another host gets it (--queue-lease). */
  queueLease?: number;
  /** Extra reporters (tests and benches observe a run through these). */
  reporters?: Reporter[];
  /** Print to the terminal (false in benches). */
  terminal?: boolean;
  /** Draw the live status line on a terminal (default true; watch mode prints its own lines between the events). */
  live?: boolean;
  /** Stops this run of the suite when aborted (watch mode): its reason, a StopCause, is each stopped run's failure. */
  stop?: AbortSignal;
  /** Told the qemu runtime once it is ready, so that a next run (watch mode) can reuse it. */
  onQemuRuntime?: (rt: QemuRuntime) => void;
  /** A runtime an earlier run prepared (watch mode): its image and accelerator are reused, its Debian images looked up again. */
  previousQemu?: QemuRuntime;
}

/** Where --keep-machine-state keeps machines (0700: disks may hold anything the guest wrote). */
function keptStateRoot(): string {
  const dir = resolve(".haltpoint", "state");
  makePrivateDir(dir);
  return dir;
}

/**
 * Where halted tests are saved as bundles, if they are (--save-breakpoints DIR, or true for
 * <log dir>/breakpoints). The CLI decides the default (see unattendedSaveRule in cli.ts).
 */
export function saveBreakpointsDir(o: Pick<RunOptions, "saveBreakpoints">, logDir: string): string | undefined {
  if (typeof o.saveBreakpoints === "string") return resolve(o.saveBreakpoints);
  return o.saveBreakpoints === true ? join(logDir, "breakpoints") : undefined;
}

export function defaultLogDir(now = new Date()): string {
  return join(".haltpoint", "runs", now.toISOString().replace(/[:.]/g, "-"));
}

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

  const reporters: Reporter[] = [];
  if (o.terminal !== false) {
    const live = o.live !== false && Boolean(process.stdout.isTTY) && !process.env.CI;
    // Reporters' libraries load only when used: the main thread's footprint is measured.
    const logUpdate = live ? (await import("log-update")).default : undefined;
    reporters.push(new TerminalReporter({ quiet: o.quiet, live, logUpdate }));
  }
  // Its notices go to every reporter (the set is made below).
  reporters.push(new RunLogReporter((msg) => out.onNotice(msg), IN_MEMORY_FS.has(fileSystemType(realpathSync(logDir)).name)));
  if (o.junit) reporters.push(new (await import("../reporters/junit.ts")).JUnitReporter(o.junit));
  if (o.json) reporters.push(new JsonReporter(o.json));
  if (o.html) reporters.push(new (await import("../reporters/html/html-reporter.ts")).HtmlReporter(o.html));
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
      out.onNotice({ kind: "signal", signal: sig, again: false });
      if (scheduler) scheduler.interrupt(sig);
      else startupSignal = sig;
    } else {
      out.onNotice({ kind: "signal", signal: sig, again: true });
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
  if (swept.length) out.onNotice({ kind: "swept-state-dirs", dirs: swept });
  const stateRoot = makeStateRoot();
  const maxFrozen = o.maxFrozen ?? 4;
  // Halted tests keep their worker thread but give back their --jobs slot: room for both.
  const pool = createPool({ threads: o.jobs, extraThreads: maxFrozen, workerMemoryMb: o.workerMemoryMb });
  // A worker error outside any task must not end the run (an unhandled 'error' event would).
  pool.on("error", (e: unknown) => out.onNotice({ kind: "pool-error", message: describeThrown(e instanceof Error ? e.message : e) }));
  const lateErrors = listenForLateErrors((n) => out.onNotice({ kind: "late-error", run: n.runKey, errorKind: n.kind, message: n.message }));
  const broker = new BreakpointBroker(
    {
      startPort: o.debugPort ?? 4444,
      host: o.debugBind ?? "127.0.0.1",
      maxFrozen,
      ttlMs: (o.freezeTtl ?? 30 * 60) * 1000,
      socketRoot: controlDir(),
    },
    out,
  );
  // `haltpoint ls / attach / release` reach this run through its control socket.
  const control = await ControlServer.listen((req) => handleControl(broker, req)).catch((e: Error) => {
    out.onNotice({ kind: "no-control-socket", message: e.message });
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
      memoryMiB: o.memoryMiB ?? Math.floor((totalmem() / 2 ** 20) * 0.8),
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
    for (const text of sel.notices) out.onNotice({ kind: "info", source: "selection", text });
    if (!selected.length && !loadErrors.length) out.onNotice({ kind: "no-tests", reason: sel.emptyReason ?? "none", passWithNoTests: o.passWithNoTests ?? false });
    // --stress-duration: runs are made as slots free until the time is up (the plan has none yet).
    const stress = o.stressDuration ? new StressRuns(selected, o.stressDuration * 1000, (i) => stressRunNumber(i, sel.shard)) : undefined;
    const runs = stress ? [] : (sel.runs ?? expandRuns(selected, o.repeat));
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
      const { joinAsHost } = await import("../queue/join-host.ts");
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
        },
        selected,
        runs,
        (text) => out.onNotice({ kind: "info", source: "queue", text }),
      );
      closeQueue = () => queueHost!.close();
      out.add(queueHost);
      const sched = scheduler;
      // Another host's --until-fail/--max-fail (or Redis gone): start nothing more here; runs in flight finish.
      queueHost.onStop = (stop) => {
        const first = sched.stopReason === undefined;
        sched.stopReason ??= stop;
        sched.stopAdmission();
        if (first && stop.kind !== "interrupted") out.onNotice({ kind: "stopped", stop });
      };
    }
    out.onPlan(plan);
    const localNotice = selected.some((t) => t.nodes.some((n) => n.backend === "local")) ? sandboxNotice() : undefined;
    if (localNotice) out.onNotice({ kind: "info", source: "sandbox", text: localNotice });
    if (selected.some((t) => t.nodes.some((n) => n.backend === "qemu"))) {
      try {
        const debian = selected.flatMap((t) => t.nodes.flatMap((n) => (n.debian ? [{ spec: n.debian, who: `${relative(process.cwd(), t.file) || t.file}: node '${n.name}'` }] : [])));
        scheduler.qemu = o.qemuRuntime ?? (await prepareQemu(o.accel ?? "auto", (text) => out.onNotice({ kind: "info", source: "qemu", text }), { snapshotBoot: o.snapshotBoot, debian, previous: o.previousQemu }));
        o.onQemuRuntime?.(scheduler.qemu);
      } catch (e) {
        scheduler.qemuUnavailable = (e as Error).message;
        out.onNotice({ kind: "qemu-unavailable", message: scheduler.qemuUnavailable });
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
    await out.onEnd(summary);
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

async function handleControl(broker: BreakpointBroker, req: ControlRequest): Promise<ControlReply> {
  switch (req.cmd) {
    case "ls":
      return { ok: true, breakpoints: broker.list() };
    case "release":
      return broker.release(req.id, "haltpoint release")
        ? { ok: true, released: [req.id] }
        : { ok: false, error: `no breakpoint ${req.id} in this run` };
    case "release-all":
      return { ok: true, released: broker.releaseAll("haltpoint release --all") };
    case "save": {
      const e = await broker.save(req.id, req.dir);
      if (e.error !== undefined) return { ok: false, error: `breakpoint ${req.id}: ${e.error}` };
      return { ok: true, bundle: { dir: e.dir, bytes: e.bytes ?? 0, ms: e.ms ?? 0, skipped: e.skipped ?? [], ...(e.imageBytes ? { imageBytes: e.imageBytes } : {}) } };
    }
  }
}
