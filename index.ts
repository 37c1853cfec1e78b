// haltpoint's public API for test files: `import { defineTest } from "haltpoint"`.
import type { Machine, NodeOptions } from "./vm/types.ts";

export type { Machine, NodeOptions, ExecuteOptions, ExecuteResult, WaitOptions, PortOptions, BackendName } from "./vm/types.ts";
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
export type TestContext<N extends Record<string, NodeOptions> = Record<string, NodeOptions>> = {
  [K in keyof N]: Machine;
} & {
  machines: Machine[];
  startAll(): Promise<void>;
  subtest<T>(name: string, fn: () => Promise<T> | T): Promise<T>;
  /** Call `fn(lastTry)` once a second until it returns true (NixOS `retry`). */
  retry(fn: (lastTry: boolean) => boolean | Promise<boolean>, opts?: RetryOptions): Promise<void>;
  debug: DebugApi;
  log(msg: string): void;
  /** Which run of this test this is (1-based; `--repeat` makes several). */
  run: number;
};

export interface TestDefinition<N extends Record<string, NodeOptions> = Record<string, NodeOptions>> {
  /** Default: the file name without `.vmtest.ts`. */
  name?: string;
  nodes?: N;
  /** Seconds, default 3600; paused while halted at a breakpoint. */
  globalTimeout?: number;
  enableDebugHook?: boolean;
  testScript(ctx: TestContext<N>): Promise<void>;
}

export const TEST_BRAND = Symbol.for("haltpoint.test");

export type DefinedTest = TestDefinition & { [TEST_BRAND]: true };

/** Declare a VM test; export the result as the file's default export. */
export function defineTest<N extends Record<string, NodeOptions>>(def: TestDefinition<N>): TestDefinition<N> {
  if (typeof def !== "object" || def === null) throw new TypeError("defineTest() takes an object");
  if (typeof def.testScript !== "function") throw new TypeError("defineTest(): `testScript` must be a function");
  if (def.name !== undefined && (typeof def.name !== "string" || !def.name.trim())) throw new TypeError("defineTest(): `name` must be a non-empty string");
  if (def.globalTimeout !== undefined && !(typeof def.globalTimeout === "number" && def.globalTimeout > 0)) {
    throw new TypeError("defineTest(): `globalTimeout` must be a positive number of seconds");
  }
  return Object.assign(Object.create(null), def, { [TEST_BRAND]: true });
}
