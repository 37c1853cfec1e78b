import { join } from "node:path";
import type { BaseMachine, MachineContext } from "../vm/machine.ts";

/** Where a run's machines report to: the run's own log, ledger, directories and hooks. */
export interface RunTarget {
  log(machine: string, msg: string, time: number): void;
  trackProcess(machine: string, pid: number, alive: boolean): void;
  consolePath(machine: string): string;
  outputDir: string;
  started(machine: string): void;
  aroundCommand(machine: string): Promise<void>;
}

/**
 * The MachineContext of one run's machines, whose state lives in `dir`. Usually it leads to
 * its run from the start. A run's machines taken ahead (machines-ahead.ts) are made and started
 * before their run exists: until `route()` gives them one, their log lines, processes and
 * consoles are held here, then handed over as if they had happened in the run (log lines keep
 * the time they were written).
 */
export class RunContext implements MachineContext {
  private target: RunTarget | undefined;
  private readonly heldLines: Array<{ machine: string; msg: string; time: number }> = [];
  private readonly heldProcesses = new Map<number, string>();
  readonly keptStateDir?: (machine: string) => string;

  constructor(
    /** The run's state directory: one subdirectory per machine. */
    readonly dir: string,
    target?: RunTarget,
    keptStateDir?: (machine: string) => string,
    /** Before its run: a process appeared or went away (the main thread's ledger keeps it meanwhile). */
    private readonly heldProcess?: (machine: string, pid: number, alive: boolean) => void,
  ) {
    this.target = target;
    if (keptStateDir) this.keptStateDir = keptStateDir;
  }

  log(machine: string, msg: string): void {
    if (this.target) this.target.log(machine, msg, Date.now());
    else this.heldLines.push({ machine, msg, time: Date.now() });
  }

  trackProcess(machine: string, pid: number, alive: boolean): void {
    if (this.target) return this.target.trackProcess(machine, pid, alive);
    if (alive) this.heldProcesses.set(pid, machine);
    else this.heldProcesses.delete(pid);
    this.heldProcess?.(machine, pid, alive);
  }

  consolePath(machine: string): string | undefined {
    return this.target?.consolePath(machine);
  }

  stateDir(machine: string): string {
    return join(this.dir, machine);
  }

  get outputDir(): string {
    return this.target?.outputDir ?? join(this.dir, "out");
  }

  started(machine: string): void {
    // Before its run, nobody to tell: the run announces its machines once it takes them.
    this.target?.started(machine);
  }

  aroundCommand(machine: string): Promise<void> {
    return this.target ? this.target.aroundCommand(machine) : Promise.resolve();
  }

  /**
   * These machines will have no run (torn down unused): what they log from now on (their
   * teardown) goes to `sink`; what they held is dropped, being about a run that never began.
   */
  orphan(sink: (machine: string, msg: string) => void): void {
    this.heldLines.length = 0;
    this.target = {
      log: (machine, msg) => sink(machine, msg),
      trackProcess: (machine, pid, alive) => this.heldProcess?.(machine, pid, alive),
      consolePath: () => "",
      outputDir: join(this.dir, "out"),
      started: () => {},
      aroundCommand: () => Promise.resolve(),
    };
  }

  /**
   * The run these machines were made for has begun: from now on they report to it, and what
   * they did before it began is handed over: log lines, live processes (taken from the held
   * ledger entry into the run's), consoles written to the run's log directory. (Their starts are
   * the run's to announce: it has the SSH backdoor.)
   */
  route(target: RunTarget, machines: BaseMachine[]): void {
    if (this.target) throw new Error("RunContext.route: this context already has its run");
    this.target = target;
    for (const m of machines) m.console.attachFile(target.consolePath(m.name));
    for (const l of this.heldLines.splice(0)) target.log(l.machine, l.msg, l.time);
    for (const [pid, machine] of this.heldProcesses) {
      target.trackProcess(machine, pid, true);
      this.heldProcess?.(machine, pid, false);
    }
    this.heldProcesses.clear();
  }
}
