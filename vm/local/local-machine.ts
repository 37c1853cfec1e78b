import { execa, type ResultPromise } from "execa";
import { mkdirSync } from "node:fs";
import { BackdoorShell, ShellClosedError, ShellTimeoutError, ansiCQuote } from "../backdoor-shell.ts";
import { BaseMachine, type MachineContext } from "../machine.ts";
import { NotSupportedError } from "../errors.ts";
import type { NodeOptions } from "../types.ts";
import { childrenOf, descendantsOf, signal } from "./process-tree.ts";
import { sandboxPrefix } from "./sandbox.ts";

const SHUTDOWN_GRACE_MS = 5000;

/**
 * A machine that is a process sandbox on the host: a root shell in its own process group
 * (and PID/UTS namespace where `unshare` allows) with its own directory as cwd and $HOME.
 * Commands go through the same backdoor shell protocol as a guest's hvc0.
 */
export class LocalMachine extends BaseMachine {
  readonly backend = "local" as const;
  private proc: ResultPromise | undefined;
  private shell: BackdoorShell | undefined;
  private exited: Promise<void> | undefined;
  private stopping = false;
  private exitHow: string | undefined;
  readonly dir: string;

  constructor(name: string, options: NodeOptions, ctx: MachineContext) {
    super(name, options, ctx);
    this.dir = ctx.stateDir(name);
  }

  /** PID of the process group leader (the sandbox), for freeze and teardown. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  protected async doStart(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const prefix = sandboxPrefix();
    const argv = [...prefix, "bash", "--norc", "--noprofile", "-s"];
    const proc = execa(argv[0]!, argv.slice(1), {
      cwd: this.dir,
      env: { HOME: this.dir, HALTPOINT_MACHINE: this.name, PS1: "", TERM: "dumb" },
      extendEnv: true,
      detached: true, // its own process group: freeze/crash signal the whole group
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      buffer: false,
      reject: false,
      cleanup: true,
    });
    this.proc = proc;
    const pid = proc.pid;
    if (pid === undefined) throw this.error("could not spawn the sandbox shell");
    this.ctx.trackProcess(this.name, pid, true);
    proc.stderr!.on("data", (c: Buffer) => this.console.append(c));
    this.exited = proc.then((r) => {
      this.ctx.trackProcess(this.name, pid, false);
      // Whatever the shell left behind in its group goes with it.
      signal(-pid, "SIGKILL");
      const how = r.signal ? `signal ${r.signal}` : `exit code ${r.exitCode}`;
      this.exitHow = how;
      this.shell?.close(new ShellClosedError(`machine ${this.name}: shell exited (${how})`));
      if (!this.stopping && this.isUp) {
        this.state = "crashed";
        this.log(`shell exited unexpectedly (${how})`);
      }
    });
    this.shell = new BackdoorShell(proc.stdin!, proc.stdout!, (line) => this.console.append(line + "\n"));
    await this.shell.init(`${this.dir}/.hp-out`, 10_000);
    if (prefix.length && !this.dir.startsWith("/tmp/")) {
      // In its own namespaces: its own hostname, and a private /tmp (parallel tests that
      // use the same /tmp path must not see each other's files).
      const tmp = ansiCQuote(`${this.dir}/tmp`);
      await this.shell.run(`hostname ${ansiCQuote(this.name)}; mkdir -p ${tmp} && chmod 1777 ${tmp} && mount --bind ${tmp} /tmp`, 10_000);
    }
    this.console.append(`local machine ${this.name} started (pid ${pid}${prefix.length ? ", own namespaces" : ""})\n`);
  }

  protected async rawExecute(cmd: string, timeoutMs: number): Promise<{ status: number; stdout: Buffer }> {
    if (!this.shell) throw this.error("not started");
    try {
      return await this.shell.run(cmd, timeoutMs, () => this.killRunningCommand());
    } catch (e) {
      if (e instanceof ShellTimeoutError) throw this.error(`command \`${cmd}\` ${e.message}`, cmd);
      if (e instanceof ShellClosedError) {
        // The pipe closes a moment before the exit status is known: wait for it to name the cause.
        await Promise.race([this.exited, new Promise((r) => setTimeout(r, 1000))]);
        const why = this.exitHow ? `shell exited (${this.exitHow})` : e.message;
        throw this.error(`command \`${cmd}\` lost its shell: ${why}`, cmd);
      }
      throw e;
    }
  }

  /** A sandbox has no init of its own: the host's systemd is not this machine's. */
  override waitForUnit(_unit: string): Promise<void> {
    return Promise.reject(new NotSupportedError(this.name, "waitForUnit", this.backend));
  }

  /** Kill what the shell is running (its children), keeping the shell itself. */
  private killRunningCommand(): void {
    const shellPid = this.shellPid();
    if (shellPid === undefined) return;
    for (const p of descendantsOf(shellPid).reverse()) signal(p, "SIGKILL");
  }

  /** The bash process: the sandbox leader itself, or its child under `unshare --fork`. */
  private shellPid(): number | undefined {
    const pid = this.proc?.pid;
    if (pid === undefined) return undefined;
    return sandboxPrefix().length ? childrenOf(pid)[0] : pid;
  }

  protected async doFreeze(): Promise<void> {
    if (this.proc?.pid) signal(-this.proc.pid, "SIGSTOP");
  }

  protected async doThaw(): Promise<void> {
    if (this.proc?.pid) signal(-this.proc.pid, "SIGCONT");
  }

  protected async doShutdown(): Promise<void> {
    this.stopping = true;
    this.proc?.stdin?.end(); // EOF: the shell exits by itself
    const timer = setTimeout(() => this.proc?.pid && signal(-this.proc.pid, "SIGKILL"), SHUTDOWN_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }

  protected async doCrash(): Promise<void> {
    this.stopping = true;
    if (this.proc?.pid) {
      signal(-this.proc.pid, "SIGCONT");
      signal(-this.proc.pid, "SIGKILL");
    }
    await this.exited;
  }
}
