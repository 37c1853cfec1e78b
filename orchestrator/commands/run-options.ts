// `haltpoint run`'s options (what cli.ts, watch mode, revive and the benches pass runCommand),
// and the defaults derived from them: the log dir, the bundle dir, where kept state lives.
import { join, resolve } from "node:path";
import type { QemuRuntime } from "../../vm/qemu/qemu-runtime.ts";
import type { SettingLayers } from "../settings/test-settings.ts";
import type { ShardSpec } from "../selection/selection.ts";
import type { Reporter } from "../report-events.ts";
import { makePrivateDir } from "../settings/output-paths.ts";

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
  /** A flake hunt's workers start the next run's machines while a run runs (default true; --no-take-ahead). */
  takeAhead?: boolean;
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
export function keptStateRoot(): string {
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
