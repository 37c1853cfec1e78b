// The names a node cannot take are exactly what the test context and the breakpoint console
// bind (common/context-names.ts), checked against the real objects; a node named after one
// is a load error naming it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MessageChannel } from "node:worker_threads";
import { BreakpointHook } from "../../hooks/breakpoints/breakpoint-hook.ts";
import { resolveNodes } from "../../vm/node-options.ts";
import { CONSOLE_NAMES, RESERVED_NAMES, TEST_CONTEXT_NAMES } from "../../common/context-names.ts";
import type { DriverApi } from "../../worker/driver-api.ts";
import { buildTestContext } from "../../worker/test-context.ts";
import type { DebugApi } from "../../index.ts";

test("the test context binds TEST_CONTEXT_NAMES and nothing else besides the machines", () => {
  // Only the three bound methods' names matter here, not what they do.
  const driver = { pollingCondition() {}, createMachine() {}, serialStdout() {} } as unknown as DriverApi;
  const ctx = buildTestContext([], 1, () => {}, {} as DebugApi, 1, driver);
  assert.deepEqual(Object.keys(ctx).sort(), [...TEST_CONTEXT_NAMES].sort());
});

test("the breakpoint console binds CONSOLE_NAMES and nothing else besides the machines", () => {
  const { port1, port2 } = new MessageChannel();
  try {
    const scope = new BreakpointHook(port1, [], () => {}, "t").consoleScope(new Error("x"), () => {});
    assert.deepEqual(Object.keys(scope).sort(), [...CONSOLE_NAMES].sort());
  } finally {
    port1.close();
    port2.close();
  }
});

test("a node named after any of them is refused with its name (attempt, release, thaw, error …)", () => {
  for (const name of ["attempt", "release", "thaw", "freeze", "error", "machines", "log"]) {
    assert.ok(RESERVED_NAMES.includes(name));
    assert.throws(() => resolveNodes({ [name]: {} }, "local", RESERVED_NAMES), new RegExp(`${name}.*the name is taken by the test script's context or the breakpoint console`));
  }
  assert.doesNotThrow(() => resolveNodes({ machine: {}, server: {} }, "local", RESERVED_NAMES), "machine (NixOS's single-node alias) and ordinary names are fine");
});
