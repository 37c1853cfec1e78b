import { debianPackagesOf } from "../vm/node-options.ts";
import type { CollectResult, CollectTask } from "../common/events.ts";
import { describeThrown } from "../common/describe-thrown.ts";
import { TestFileError, loadTestFile } from "./load-test-file.ts";

/** Load a test file and report what it declares, or why it cannot load. */
export async function collectTest(task: CollectTask, lateError: Promise<never> = new Promise<never>(() => {})): Promise<CollectResult> {
  try {
    // A timer the file starts at top level and that throws while it loads fails its load.
    const t = await Promise.race([loadTestFile(task.file, task.defaultBackend), lateError]);
    return {
      ok: true,
      name: t.name,
      nodes: t.nodes.map((n) => {
        const debianPackages = debianPackagesOf(n.options);
        return { name: n.name, backend: n.backend, memory: n.memory, cores: n.cores, ...(debianPackages ? { debianPackages } : {}) };
      }),
      globalTimeout: t.globalTimeout,
      enableDebugHook: t.enableDebugHook,
      retries: t.retries,
    };
  } catch (e) {
    return { ok: false, error: e instanceof TestFileError ? e.message : `${task.file}: ${describeThrown(e instanceof Error ? e.message : e)}` };
  }
}
