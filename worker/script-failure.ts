import type { ScriptFailureKind } from "../common/failure-kinds.ts";
import { MachineError } from "../vm/errors.ts";
import { TestFileError } from "./load-test-file.ts";

/**
 * What kind of failure the script's error is, decided here in the worker where the error
 * is still an instance of its class (the main thread gets a structured clone, whose class
 * is gone): a machine marks its own errors (vm/errors.ts), a file that cannot load is a
 * TestFileError, everything else the script threw counts as an assertion.
 */
export function scriptFailureKind(e: unknown): ScriptFailureKind {
  try {
    if (e instanceof TestFileError) return "load-error";
    if (e instanceof MachineError && e.kind) return e.kind;
  } catch {
    /* a revoked Proxy throws even on instanceof: it is just something the script threw */
  }
  return "assertion";
}
