import type { ResultPromise } from "execa";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync } from "node:fs";
import { BackdoorShell, ShellClosedError, ansiCQuote } from "../backdoor-shell.ts";
import type { BackdoorAccess } from "../backdoor-access.ts";
import type { MachineContext } from "../machine.ts";
import { ShellMachine } from "../shell-machine.ts";
import { VM_ONLY_METHODS } from "../guest-machine.ts";
import { NotSupportedError } from "../errors.ts";
import type { NodeOptions } from "../types.ts";
import { childrenOf, descendantsOf, processState, signal } from "./process-tree.ts";
import { sandboxPrefix } from "./sandbox.ts";
import { spawnMachineProcess } from "../machine-process.ts";
import { withParentDeathSignal } from "../parent-death.ts";

const SHUTDOWN_GRACE_MS = 5000;

/**
 * A machine that is a process sandbox on the host: a root shell in its own process group
 * (and PID/UTS namespace where `unshare` allows) with its own directory as cwd and $HOME.
 * Commands go through the same backdoor shell protocol as a guest's hvc0.
 */
export class LocalMachine extends ShellMachine {
  readonly backend = "local" as const;
  private proc: ResultPromise | undefined;
  protected readonly processName = "shell";
  private stopping = false;
  /** Processes started into the sandbox from outside (SSH sessions): frozen, thawed and killed with it. */
  private readonly attached = new Set<ChildProcess>();
  /** Processes that were already stopped (job control) when the machine froze: thaw leaves them stopped. */
  private stoppedBefore = new Set<number>();
  readonly dir: string;

  constructor(name: string, options: NodeOptions, ctx: MachineContext) {
    super(name, options, ctx);
    // --keep-machine-state: the directory (cwd, $HOME) outlives the run.
    this.dir = ctx.keptStateDir?.(name) ?? ctx.stateDir(name);
  }

  /** The SSH backdoor: the sandbox shares the host's network; port 22 is an SSH server haltpoint runs in it. */
  override backdoorAccess(): BackdoorAccess {
    return { kind: "sandbox", machine: this };
  }

  /** PID of the process group leader (the sandbox), for freeze and teardown. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  protected async doStart(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const prefix = sandboxPrefix();
    const { proc, pid, exited } = spawnMachineProcess(this.ctx, this.name, [...prefix, "bash", "--norc", "--noprofile", "-s"], {
      cwd: this.dir,
      env: this.ownEnv(),
      stdin: "pipe",
      outputStreams: ["stderr"], // stdout carries the backdoor protocol
      onOutput: (c) => this.console.append(c),
    });
    this.proc = proc;
    this.exited = exited.then((how) => {
      // Whatever the shell left behind in its group goes with it, and so do its sessions.
      signal(-pid, "SIGKILL");
      this.killAttached();
      this.exitHow = how;
      this.shell?.close(new ShellClosedError(`machine ${this.name}: shell exited (${how})`));
      if (!this.stopping && this.isUp) {
        this.state = "crashed";
        this.log(`shell exited unexpectedly (${how})`);
      }
    });
    this.shell = new BackdoorShell(proc.stdin!, proc.stdout!, (line) => this.console.append(line + "\n"));
    await this.shell.init(`${this.dir}/.hp-out`, 10_000, prefix.length ? this.namespaceSetup() : "true");
    this.console.append(`local machine ${this.name} started (pid ${pid}${prefix.length ? ", own namespaces" : ""})\n`);
  }

  /**
   * In its own namespaces: its own hostname, and a private /tmp (parallel tests that use the
   * same /tmp path must not see each other's files). The shell's first command, and cheap:
   * a builtin write sets the UTS namespace's hostname, and the directory is made here, so
   * `mount` is the one program it starts (process starts are what a local run costs). In an
   * unprivileged user namespace /proc/sys/kernel/hostname stays the host root's and the write
   * is denied, while sethostname(2) is allowed: hostname(1) sets it there.
   */
  private namespaceSetup(): string {
    const name = ansiCQuote(this.name);
    const setHostname = `{ printf %s ${name} 2>/dev/null >/proc/sys/kernel/hostname || hostname ${name}; }`;
    if (this.dir.startsWith("/tmp/")) return setHostname;
    const tmp = `${this.dir}/tmp`;
    mkdirSync(tmp, { recursive: true });
    chmodSync(tmp, 0o1777);
    return `${setHostname} && mount --bind ${ansiCQuote(tmp)} /tmp`;
  }

  /** What the sandbox shell's environment adds to the worker's. */
  private ownEnv(): Record<string, string> {
    return { HOME: this.dir, HALTPOINT_MACHINE: this.name, PS1: "", TERM: "dumb" };
  }

  /** The environment of the machine's shell, for a process started into it. */
  sandboxEnv(): NodeJS.ProcessEnv {
    return { ...process.env, ...this.ownEnv() };
  }

  /**
   * Start a process inside the running machine, as its own shell would: in its namespaces
   * (PID, mount — its private /tmp —, UTS: its hostname), in its directory, with `env`
   * (default: the shell's environment). The process and everything it starts are frozen and
   * thawed with the machine and killed with it. It runs in a process group of its own (a
   * group cannot be joined from outside the sandbox's session); freeze() finds it by ancestry.
   */
  spawnInside(argv: string[], opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    if (this.state !== "running") throw this.error(`cannot start \`${argv.join(" ")}\`: the machine is ${this.state}`);
    const prefix = sandboxPrefix();
    let file = argv[0]!;
    let args = argv.slice(1);
    if (prefix.length) {
      const target = this.shellPid();
      if (target === undefined) throw this.error("cannot start a process: the sandbox shell is gone");
      // Unprivileged sandboxes have a user namespace too, where our uid is mapped to root
      // already; it denies setgroups, hence --preserve-credentials.
      const ns = prefix.includes("--user") ? ["--user", "--preserve-credentials"] : [];
      file = "nsenter";
      args = ["--target", String(target), ...ns, "--pid", "--mount", "--uts", `--wd=${this.dir}`, "--", ...argv];
    }
    const [cmd, ...rest] = withParentDeathSignal([file, ...args]);
    const child = spawn(cmd!, rest, { cwd: this.dir, env: opts.env ?? this.sandboxEnv(), detached: true, stdio: "pipe" });
    const pid = child.pid;
    if (pid !== undefined) {
      this.attached.add(child);
      this.ctx.trackProcess(this.name, pid, true);
      child.once("exit", () => {
        this.attached.delete(child);
        this.ctx.trackProcess(this.name, pid, false);
      });
    }
    return child;
  }

  /** The process that `spawnInside` started runs as this pid in the sandbox (nsenter's child), for signals. */
  innerPid(child: ChildProcess): number | undefined {
    if (child.pid === undefined) return undefined;
    return sandboxPrefix().length ? childrenOf(child.pid)[0] : child.pid;
  }

  /** Every process of the machine and of its attached sessions, parents before children. */
  private processTree(): { groups: number[]; pids: number[] } {
    const groups = [this.proc?.pid, ...[...this.attached].map((c) => c.pid)].filter((p): p is number => p !== undefined);
    const pids: number[] = [];
    for (const g of groups) pids.push(g, ...descendantsOf(g));
    return { groups, pids };
  }

  private killAttached(): void {
    for (const c of this.attached) {
      if (c.pid === undefined) continue;
      const tree = [c.pid, ...descendantsOf(c.pid)];
      signal(-c.pid, "SIGKILL");
      for (const p of tree) signal(p, "SIGKILL");
    }
  }

  /** A sandbox has no init of its own: systemctl would reach the host's systemd, so the systemd calls are not supported. */

  /** Kill what the shell is running (its children), keeping the shell itself: synchronous,
   *  before the next command is sent, so it is always command `_id`'s tree. */
  protected killCommand(_id: number): void {
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

  /**
   * SIGSTOP the machine's process group and those of its SSH sessions, then every process
   * descended from them that left those groups (a pty session's shell calls setsid, so may a
   * daemon the test started), pass after pass until a pass finds nothing new: a process can
   * fork between a listing and its stop, and its child shows up in the next listing.
   */
  protected async doFreeze(): Promise<void> {
    const { groups, pids } = this.processTree();
    this.stoppedBefore = new Set(pids.filter((p) => processState(p) === "T"));
    for (const g of groups) signal(-g, "SIGSTOP");
    const stopped = new Set<number>();
    for (let pass = 0; pass < 50; pass++) {
      let fresh = 0;
      for (const p of this.processTree().pids) {
        if (stopped.has(p)) continue;
        stopped.add(p);
        signal(p, "SIGSTOP");
        fresh++;
      }
      if (!fresh) break;
    }
  }

  /**
   * SIGCONT children before their parents: nsenter waits for its child with WUNTRACED and,
   * seeing it stopped, would stop itself again.
   */
  protected async doThaw(): Promise<void> {
    const { groups, pids } = this.processTree();
    for (const p of pids.reverse()) if (!this.stoppedBefore.has(p)) signal(p, "SIGCONT");
    for (const g of groups.reverse()) signal(-g, "SIGCONT");
    this.stoppedBefore.clear();
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
    this.killAttached();
    if (this.proc?.pid) {
      signal(-this.proc.pid, "SIGCONT");
      signal(-this.proc.pid, "SIGKILL");
    }
    await this.exited;
  }
}

// A local sandbox has no systemd, screen, monitor or network of its own: its type (Machine)
// has none of those calls, and a JavaScript script that calls one anyway gets a clear error.
for (const method of VM_ONLY_METHODS) {
  Object.defineProperty(LocalMachine.prototype, method, {
    value(this: LocalMachine) {
      return Promise.reject(new NotSupportedError(this.name, method, this.backend));
    },
  });
}
