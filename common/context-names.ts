// The names a test script's context and a breakpoint console's scope bind besides the
// machines. A node may not take one: it would replace the helper (a node named `attempt`
// hides the attempt number) or be replaced by it (a node named `release` makes `release()`
// in its console a TypeError). buildTestContext and the breakpoint hook bind exactly these;
// test/unit/context-names.test.ts checks that against the real objects.

/** Bound by worker/test-context.ts (the driver's three only when the run has a driver). */
export const TEST_CONTEXT_NAMES = ["machines", "run", "attempt", "debug", "log", "startAll", "joinAll", "subtest", "retry", "pollingCondition", "createMachine", "serialStdout"] as const;

/** Bound by hooks/breakpoints/breakpoint-hook.ts in every console session. */
export const CONSOLE_NAMES = ["machines", "error", "thaw", "freeze", "release"] as const;

/** Every name a node cannot have. */
export const RESERVED_NAMES: readonly string[] = [...new Set<string>([...TEST_CONTEXT_NAMES, ...CONSOLE_NAMES])];
