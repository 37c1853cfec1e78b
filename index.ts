// haltpoint's public API for test files: `import { defineTest } from "haltpoint"`.
import type { Machine, NodeOptions, VmMachine } from "./vm/types.ts";

export type { Machine, VmMachine, NodeOptions, ExecuteOptions, ExecuteResult, WaitOptions, PortOptions, BackendName, CommandOptions, StartOptions, QmpEventMessage } from "./vm/types.ts";
export type { PollingCondition, PollingConditionOptions } from "./worker/polling-condition.ts";
import type { PollingCondition, PollingConditionOptions } from "./worker/polling-condition.ts";
import { definitionProblem } from "./worker/test-definition.ts";
export { MachineError, NotSupportedError } from "./vm/errors.ts";

export interface DebugApi {
  /** Halt here as if the test had failed (with the debug hook), continue after release. */
  breakpoint(): Promise<void>;
}

export interface RetryOptions {
  /** Seconds. Default 900. */
  timeout?: number;
}

/** What `testScript` receives: every node by name, plus these helpers. */
/** What a node is to its script: a local sandbox is a Machine; a qemu node (or a Debian
 *  `image`, or one whose backend comes from the command line) a VmMachine, with systemd,
 *  screen, monitor and network. */
export type NodeMachine<O> = O extends { backend: "local" } ? Machine : VmMachine;

export type TestContext<N extends Record<string, NodeOptions> = Record<string, NodeOptions>> = {
  [K in keyof N]: NodeMachine<N[K]>;
} & {
  machines: Machine[];
  startAll(): Promise<void>;
  /** NixOS `join_all`: wait until every machine has powered itself off (each machine's
   *  `waitForShutdown`; a local sandbox cannot, and says so). Default timeout 900 s each. */
  joinAll(opts?: RetryOptions): Promise<void>;
  subtest<T>(name: string, fn: () => Promise<T> | T): Promise<T>;
  /** Call `fn(lastTry)` once a second until it returns true (NixOS `retry`). */
  retry(fn: (lastTry: boolean) => boolean | Promise<boolean>, opts?: RetryOptions): Promise<void>;
  debug: DebugApi;
  log(msg: string): void;
  /** Which run of this test this is (1-based; `--repeat` makes several). */
  run: number;
  /** Which attempt of this run this is: 1, then 2… for its retries (`retries`, --retries). */
  attempt: number;
  /** NixOS `polling_condition`: `fn` must keep holding; it is checked around every machine
   *  command (at most every `secondsInterval`, default 2 s) until `.stop()`, and a false
   *  (or throwing) check fails that command with the description. */
  pollingCondition(description: string, fn: () => boolean | void | Promise<boolean | void>, opts?: PollingConditionOptions): PollingCondition;
  /** NixOS `create_machine`: a new machine during the test (torn down with the others). */
  createMachine<O extends NodeOptions>(name: string, options?: O): Promise<NodeMachine<O>>;
  /** NixOS `serial_stdout_on/off`: echo every machine's console to the terminal. */
  serialStdout(on: boolean): void;
} & SingleNodeAlias<N>;

/** The one node's name when `N` has exactly one, else never. */
type OnlyNode<N> = { [K in keyof N]: [Exclude<keyof N, K>] extends [never] ? K : never }[keyof N];

/** With a single node: that node as `machine` too (NixOS's alias); with two or more, no
 *  `machine` at all (a two-node script that names it does not type-check). */
type SingleNodeAlias<N> = [OnlyNode<N>] extends [never] ? unknown : { machine: NodeMachine<N[OnlyNode<N>]> };

export interface TestDefinition<N extends Record<string, NodeOptions> = Record<string, NodeOptions>> {
  /** Default: the file name without `.vmtest.ts`. */
  name?: string;
  nodes?: N;
  /** Seconds, default 3600; paused while halted at a breakpoint. */
  globalTimeout?: number;
  enableDebugHook?: boolean;
  /** Give every machine an SSH backdoor socket (as --ssh-backdoor does). Default: on with the
   *  debug hook, off otherwise; `false` turns it off even with the debug hook. */
  sshBackdoor?: boolean;
  /** Run a failed run again up to this many times; failed then passed is FLAKY. Default 0
   *  (--retries on the command line overrides it). A failure halted at a breakpoint is not retried. */
  retries?: number;
  testScript(ctx: TestContext<N>): Promise<void>;
}


/** Declare a VM test; export the result as the file's default export. */
export function defineTest<N extends Record<string, NodeOptions>>(def: TestDefinition<N>): TestDefinition<N> {
  if (typeof def !== "object" || def === null) throw new TypeError("defineTest() takes an object");
  const problem = definitionProblem(def);
  if (problem) throw new TypeError(`defineTest(): ${problem}`);
  return Object.assign(Object.create(null), def);
}
