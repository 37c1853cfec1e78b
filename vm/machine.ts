import { execa } from "execa";
import { mkdir } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import type { BackdoorAccess } from "./backdoor-access.ts";
import { ConsoleLog } from "./console-log.ts";
import { ansiCQuote } from "./backdoor-shell.ts";
import { ConnectionLostError, MachineError, NotSupportedError, type MachineFailureKind } from "./errors.ts";
import { splitCommandOptions, ttyTextCommand } from "./machine-commands.ts";
import { DEFAULT_WAIT_SECONDS, pollUntil } from "./poll.ts";
import type {
  BackendName,
  CommandOptions,
  ExecuteOptions,
  ExecuteResult,
  Machine,
  MachineState,
  NodeOptions,
  PortOptions,
  StartOptions,
  WaitOptions,
} from "./types.ts";

/** What a machine needs from the run that owns it. */
export interface MachineContext {
  /** A line for the run's log and the terminal, prefixed with the machine's name. */
  log(machine: string, msg: string): void;
  /** A child process (QEMU, a sandbox shell) appeared or went away: the main thread's
   *  ledger kills what is left if this worker dies. */
  trackProcess(machine: string, pid: number, alive: boolean): void;
  /** Where this machine's console log goes. */
  consolePath(machine: string): string | undefined;
  /** A private scratch directory for this machine (sockets, state). */
  stateDir(machine: string): string;
  /** --keep-machine-state: the machine's state directory kept across runs of the test. */
  keptStateDir?(machine: string): string;
  /** Default target directory of `copyFromMachine`. */
  outputDir: string;
  /** The machine has started (is running): e.g. print how to reach its SSH backdoor. */
  started?(machine: string): void;
  /** Runs before and after every command (the test's polling conditions); throws to fail it. */
  aroundCommand?(machine: string): Promise<void>;
}

/**
 * The backend-independent half of a machine: every wait, assertion and copy is built on
 * `rawExecute`, so a backend only supplies start/stop/execute/freeze.
 */
export abstract class BaseMachine implements Machine {
  abstract readonly backend: BackendName;
  state: MachineState = "created";
  readonly console: ConsoleLog;
  /** How the last start() was asked for. */
  protected startOptions: StartOptions = {};
  /** waitForConsoleText consumes what it matched (NixOS): it searches from here. */
  private consoleMark = 0;
  /** The start in progress: every caller while it runs (two commands at once) waits for this one. */
  private starting: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly options: NodeOptions,
    protected readonly ctx: MachineContext,
  ) {
    this.console = new ConsoleLog(ctx.consolePath(name));
  }

  protected abstract doStart(): Promise<void>;
  protected abstract doShutdown(): Promise<void>;
  protected abstract doCrash(): Promise<void>;
  protected abstract doFreeze(): Promise<void>;
  protected abstract doThaw(): Promise<void>;
  /** Run one command in the machine's root shell. */
  protected abstract rawExecute(cmd: string, timeoutMs: number): Promise<{ status: number; stdout: Buffer }>;

  /** A line in the run's log, naming this machine. */
  log(msg: string): void {
    this.ctx.log(this.name, msg);
  }

  protected error(msg: string, command?: string, kind?: MachineFailureKind): MachineError {
    return new MachineError(this.name, msg, command, kind);
  }

  /** How the last start() was asked for ({} when it was never started). */
  get startRequest(): StartOptions {
    return this.startOptions;
  }

  get isUp(): boolean {
    return this.state === "running" || this.state === "frozen";
  }

  /** Like the NixOS driver, any command starts a machine that was not started yet. */
  protected async autoStart(): Promise<void> {
    if (this.state === "created") await this.start();
    else if (this.starting) await this.starting; // another command is starting it
  }

  start(opts: StartOptions = {}): Promise<void> {
    if (this.isUp) return Promise.resolve();
    // Concurrent starts (`Promise.all([m.succeed("a"), m.succeed("b")])` on a machine not
    // started yet) share the one start: each resolves once the machine runs.
    this.starting ??= this.startOnce(opts).finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async startOnce(opts: StartOptions): Promise<void> {
    this.startOptions = opts;
    this.consoleMark = this.console.length;
    this.state = "starting";
    this.log("starting");
    try {
      await this.doStart();
    } catch (e) {
      this.state = "crashed";
      // Whatever a start throws is a boot failure (reports tell it from a failed command).
      if (e instanceof MachineError) e.kind ??= "boot-failed";
      throw e;
    }
    this.state = "running";
    this.ctx.started?.(this.name);
  }

  async shutdown(): Promise<void> {
    if (!this.isUp) return;
    if (this.state === "frozen") await this.thaw();
    this.log("shutting down");
    await this.doShutdown();
    this.state = "stopped";
  }

  async crash(): Promise<void> {
    if (this.state === "created" || this.state === "stopped" || this.state === "crashed") return;
    this.log("crashing");
    await this.doCrash();
    this.state = "crashed";
  }

  async freeze(): Promise<void> {
    if (this.state !== "running") return;
    await this.doFreeze();
    this.state = "frozen";
    this.log("frozen");
  }

  async thaw(): Promise<void> {
    if (this.state !== "frozen") return;
    await this.doThaw();
    this.state = "running";
    this.log("thawed");
  }

  execute(cmd: string, opts?: ExecuteOptions & { encoding?: "utf8" }): Promise<ExecuteResult<string>>;
  execute(cmd: string, opts: ExecuteOptions & { encoding: "buffer" }): Promise<ExecuteResult<Buffer>>;
  async execute(cmd: string, opts: ExecuteOptions = {}): Promise<ExecuteResult<string | Buffer>> {
    await this.autoStart();
    if (this.state === "frozen") throw this.error(`cannot run \`${cmd}\`: the machine is frozen (thaw() it first)`, cmd);
    if (!this.isUp) throw this.error(`cannot run \`${cmd}\`: the machine is ${this.state}`, cmd);
    const timeout = opts.timeout ?? DEFAULT_WAIT_SECONDS;
    const empty = opts.encoding === "buffer" ? Buffer.alloc(0) : "";
    await this.ctx.aroundCommand?.(this.name);
    const running = this.rawExecute(cmd, timeout * 1000);
    if (opts.checkOutput === false) {
      // NixOS: sent, not waited for (a command that reboots or powers off the machine).
      running.catch(() => {}); // not waited for: its end is the machine going away
      return { status: -2, stdout: empty };
    }
    let r: { status: number; stdout: Buffer };
    try {
      r = await running;
    } catch (e) {
      if (opts.checkReturn === false && e instanceof ConnectionLostError) return { status: -1, stdout: empty };
      throw e;
    }
    await this.ctx.aroundCommand?.(this.name);
    const stdout = opts.encoding === "buffer" ? r.stdout : r.stdout.toString("utf8");
    return { status: opts.checkReturn === false ? -1 : r.status, stdout };
  }

  async succeed(...args: Array<string | CommandOptions>): Promise<string> {
    await this.autoStart();
    const { cmds, timeout } = splitCommandOptions(this.name, "succeed", args);
    let out = "";
    for (const cmd of cmds) {
      this.log(`must succeed: ${cmd}`);
      const r = await this.execute(cmd, { timeout });
      if (r.status !== 0) {
        throw this.error(`command \`${cmd}\` failed (exit code ${r.status})${tailOf(r.stdout)}`, cmd, "command-failed");
      }
      out += r.stdout;
    }
    return out;
  }

  async fail(...args: Array<string | CommandOptions>): Promise<string> {
    await this.autoStart();
    const { cmds, timeout } = splitCommandOptions(this.name, "fail", args);
    let out = "";
    for (const cmd of cmds) {
      this.log(`must fail: ${cmd}`);
      const r = await this.execute(cmd, { timeout });
      if (r.status === 0) throw this.error(`command \`${cmd}\` unexpectedly succeeded${tailOf(r.stdout)}`, cmd, "command-failed");
      out += r.stdout;
    }
    return out;
  }

  /** NixOS `sleep`: in guest time, so a frozen guest's sleep does not run down. */
  async sleep(seconds: number): Promise<void> {
    if (!(typeof seconds === "number" && seconds >= 0 && Number.isFinite(seconds))) throw this.error(`sleep(${seconds}): seconds must be a number, 0 or more`);
    this.log(`sleeping ${seconds} s (guest time)`);
    const r = await this.execute(`sleep ${seconds}`, { timeout: seconds + DEFAULT_WAIT_SECONDS });
    if (r.status !== 0) throw this.error(`sleep ${seconds} failed in the machine (exit code ${r.status})`);
  }

  waitUntilSucceeds(cmd: string, opts: WaitOptions = {}): Promise<string> {
    this.log(`waiting for success: ${cmd}`);
    return this.pollCommand(cmd, opts, true);
  }

  waitUntilFails(cmd: string, opts: WaitOptions = {}): Promise<string> {
    this.log(`waiting for failure: ${cmd}`);
    return this.pollCommand(cmd, opts, false);
  }

  private pollCommand(cmd: string, opts: WaitOptions, wantSuccess: boolean): Promise<string> {
    const timeout = opts.timeout ?? DEFAULT_WAIT_SECONDS;
    return this.wrapWait(cmd, () =>
      pollUntil(`\`${cmd}\` to ${wantSuccess ? "succeed" : "fail"}`, timeout, async () => {
        const r = await this.execute(cmd, { timeout });
        return (r.status === 0) === wantSuccess ? { done: true, value: r.stdout } : { done: false, last: `last exit code ${r.status}` };
      }),
    );
  }

  async waitForFile(path: string, opts: WaitOptions = {}): Promise<void> {
    this.log(`waiting for file ${path}`);
    await this.wrapWait(undefined, () =>
      pollUntil(`file ${path}`, opts.timeout ?? DEFAULT_WAIT_SECONDS, async () =>
        (await this.execute(`test -e ${ansiCQuote(path)}`)).status === 0 ? { done: true, value: undefined } : { done: false, last: "" },
      ),
    );
  }

  waitForOpenPort(port: number, opts: PortOptions = {}): Promise<void> {
    this.log(`waiting for TCP port ${port} to open`);
    return this.pollPort(port, opts, true);
  }

  waitForClosedPort(port: number, opts: PortOptions = {}): Promise<void> {
    this.log(`waiting for TCP port ${port} to close`);
    return this.pollPort(port, opts, false);
  }

  private async pollPort(port: number, opts: PortOptions, wantOpen: boolean): Promise<void> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw this.error(`invalid TCP port ${port}`);
    const addr = opts.addr ?? "127.0.0.1";
    // bash's /dev/tcp needs no nc in the machine.
    const probe = `bash -c ${ansiCQuote(`exec 3<>/dev/tcp/${addr}/${port}`)} 2>/dev/null`;
    await this.wrapWait(undefined, () =>
      pollUntil(`TCP port ${addr}:${port} to ${wantOpen ? "open" : "close"}`, opts.timeout ?? DEFAULT_WAIT_SECONDS, async () => {
        const open = (await this.execute(probe)).status === 0;
        return open === wantOpen ? { done: true, value: undefined } : { done: false, last: "" };
      }),
    );
  }

  async waitForConsoleText(regex: RegExp | string, opts: WaitOptions = {}): Promise<string> {
    const re = typeof regex === "string" ? new RegExp(regex) : regex;
    const timeout = opts.timeout ?? DEFAULT_WAIT_SECONDS;
    this.log(`waiting for ${re} to appear on the console`);
    const signal = AbortSignal.timeout(timeout * 1000);
    try {
      // As NixOS: text a match used is consumed, so the next wait needs new text.
      const { match, end } = await this.console.waitFor(re, signal, this.consoleMark);
      this.consoleMark = end;
      return match;
    } catch (e) {
      if (signal.aborted) throw this.error(`timed out after ${timeout} s waiting for ${re} on the console`);
      throw e;
    }
  }

  async copyFromMachine(src: string, targetDir?: string): Promise<string> {
    const dir = resolve(targetDir ?? this.ctx.outputDir);
    this.log(`copying ${src} from the machine to ${dir}`);
    const r = await this.execute(`tar -cf - -C ${ansiCQuote(dirname(src))} ${ansiCQuote(basename(src))}`, { encoding: "buffer" });
    if (r.status !== 0) throw this.error(`copyFromMachine: cannot read ${src} (tar exit code ${r.status})`);
    await mkdir(dir, { recursive: true });
    await execa("tar", ["-xf", "-", "-C", dir], { input: r.stdout });
    return join(dir, basename(src));
  }

  async copyToMachine(src: string, dst: string): Promise<void> {
    this.log(`copying ${src} to ${dst} in the machine`);
    {
      const { stdout } = await execa("tar", ["-cf", "-", "-C", dirname(resolve(src)), basename(src)], { encoding: "buffer" });
      const b64 = Buffer.from(stdout).toString("base64");
      const base = ansiCQuote(basename(src));
      const target = ansiCQuote(dst);
      const cmd =
        `t=$(mktemp -d) && printf %s ${ansiCQuote(b64)} | base64 -d | tar -xf - -C "$t" && ` +
        `rm -rf ${target} && mkdir -p "$(dirname ${target})" && mv "$t"/${base} ${target} && rmdir "$t"`;
      const r = await this.execute(cmd);
      if (r.status !== 0) throw this.error(`copyToMachine: cannot write ${dst} (exit code ${r.status})`);
    }
  }

  /** Before start: how the SSH backdoor reaches this machine (see backdoor-access.ts). */
  backdoorAccess(): BackdoorAccess {
    throw new NotSupportedError(this.name, "the ssh backdoor", this.backend);
  }

  copyFromHost(src: string, dst: string): Promise<void> {
    return this.copyToMachine(src, dst);
  }

  copyFromHostViaShell(src: string, dst: string): Promise<void> {
    return this.copyToMachine(src, dst);
  }

  consoleLog(): string {
    return this.console.contents;
  }

  getConsoleLog(): string {
    return this.consoleLog();
  }

  async dumpTtyContents(tty: number | string): Promise<void> {
    const rows = (await this.getTtyText(tty)).split("\n").map((r) => r.trimEnd());
    while (rows.length && !rows.at(-1)) rows.pop();
    this.log(`tty ${tty} shows ${rows.length} line${rows.length === 1 ? "" : "s"}${rows.length ? ":" : ""}`);
    for (const r of rows) this.log(`  | ${r}`);
  }

  /** NixOS `get_tty_text`: what virtual terminal `tty` shows, cut into its rows. */
  async getTtyText(tty: number | string): Promise<string> {
    const r = await this.execute(ttyTextCommand(tty));
    if (r.status !== 0) throw this.error(`getTtyText(${tty}): cannot read /dev/vcs${tty} (exit code ${r.status})`);
    return r.stdout;
  }

  async waitUntilTtyMatches(tty: number | string, regex: RegExp | string, opts: WaitOptions = {}): Promise<void> {
    const re = typeof regex === "string" ? new RegExp(regex) : regex;
    this.log(`waiting for ${re} to appear on tty ${tty}`);
    await this.wrapWait(undefined, () =>
      pollUntil(`${re} on tty ${tty}`, opts.timeout ?? DEFAULT_WAIT_SECONDS, async () => {
        const text = await this.getTtyText(tty);
        return re.test(text) ? { done: true, value: undefined } : { done: false, last: `it shows: ${JSON.stringify(text.replace(/\s+/g, " ").trim().slice(-200))}` };
      }),
    );
  }

  /** Tear down whatever state the machine is in; never throws. Used at the end of a run. */
  async cleanup(): Promise<void> {
    // Each step's error goes to the run log (a teardown that failed explains leftovers and
    // odd next runs); none stops the steps after it or fails the run.
    const logged = (what: string) => (e: unknown) => this.log(`teardown: ${what} failed: ${e instanceof Error ? e.message : String(e)}`);
    try {
      if (this.state === "frozen") await this.thaw().catch(logged("thaw"));
      if (this.isUp || this.state === "starting") {
        await this.doCrash();
        this.state = "stopped";
      }
    } catch (e) {
      // The main thread's ledger kills what is left.
      logged("stopping the machine")(e);
    } finally {
      await this.dispose().catch(logged("releasing its sockets"));
      await this.console.close();
    }
  }

  /** Release what the backend holds besides its process (sockets, clients). */
  protected async dispose(): Promise<void> {}

  /** Rename a wait's inner timeout so the error names this machine. */
  protected async wrapWait<T>(cmd: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof MachineError) throw e;
      throw this.error((e as Error).message, cmd);
    }
  }
}

function tailOf(stdout: string): string {
  const t = stdout.trimEnd();
  if (!t) return "";
  const lines = t.split("\n").slice(-5).join("\n");
  // On lines of its own: the first line of an error stays the one-line reason.
  return `\noutput (last lines):\n${lines}`;
}
