import { createMachine as createBackendMachine, type MachineRuntime } from "../vm/create-machine.ts";
import type { BaseMachine, MachineContext } from "../vm/machine.ts";
import { resolveNodes } from "../vm/node-options.ts";
import { RESERVED_NAMES } from "../common/context-names.ts";
import type { NodeOptions } from "../vm/types.ts";
import type { WorkerEvent } from "../common/events.ts";
import { PollingConditions, type ConditionFn, type PollingCondition, type PollingConditionOptions } from "./polling-condition.ts";

/**
 * The NixOS driver's test-level calls beyond the machines themselves: polling conditions,
 * machines created while the test runs, and echoing the serial consoles to the terminal.
 * One per test run; `machines` is the run's list, which teardown and breakpoints use.
 */
export class DriverApi {
  readonly conditions = new PollingConditions();
  private echo = false;
  private readonly echoing = new Map<BaseMachine, () => void>();

  constructor(
    private readonly machines: BaseMachine[],
    private readonly ctx: MachineContext,
    private readonly runtime: MachineRuntime,
    private readonly defaultBackend: string,
    private readonly emit: (e: WorkerEvent) => void,
    /** Binds a machine created during the test into the script's context. */
    private readonly bind: (m: BaseMachine) => void,
  ) {}

  pollingCondition(description: string, fn: ConditionFn, opts?: PollingConditionOptions): PollingCondition {
    const c = this.conditions.add(description, fn, opts);
    this.emit({ t: "log", time: Date.now(), msg: `polling condition active: ${description}` });
    return c;
  }

  /** NixOS `create_machine`: a machine the test builds itself; torn down with the others. */
  async createMachine(name: string, options: NodeOptions = {}): Promise<BaseMachine> {
    if (typeof name !== "string") throw new TypeError("createMachine(name, options): the name is a string");
    if (this.machines.some((m) => m.name === name)) throw new Error(`createMachine: there is already a machine named '${name}'`);
    const [node] = resolveNodes({ [name]: options }, this.defaultBackend, RESERVED_NAMES).map((n) => ({ ...n }));
    if (node!.backend === "qemu" && !this.runtime.qemu) {
      throw new Error(`createMachine('${name}'): a qemu machine needs the guest image, which is prepared for tests that declare a qemu node in \`nodes\``);
    }
    // Not on the run's virtual network: its addresses were handed out to the declared nodes.
    const m = await createBackendMachine(node!, this.ctx, { qemu: this.runtime.qemu });
    this.machines.push(m);
    this.bind(m);
    if (this.echo) this.startEcho(m);
    this.emit({ t: "log", time: Date.now(), machine: name, msg: `created (${node!.backend})` });
    return m;
  }

  /** NixOS `serial_stdout_on/off`: every machine's console lines go to the terminal too. */
  serialStdout(on: boolean): void {
    this.echo = on;
    for (const m of this.machines) (on ? this.startEcho(m) : this.stopEcho(m));
  }

  private startEcho(m: BaseMachine): void {
    if (this.echoing.has(m)) return;
    this.echoing.set(m, m.console.onLine((line) => this.emit({ t: "console", time: Date.now(), machine: m.name, line })));
  }

  private stopEcho(m: BaseMachine): void {
    this.echoing.get(m)?.();
    this.echoing.delete(m);
  }
}
