import type { CollectResult, CollectTask } from "./events.ts";
import { loadTestFile } from "./load-test-file.ts";

/** Load a test file and report what it declares, or why it cannot load. */
export async function collectTest(task: CollectTask): Promise<CollectResult> {
  try {
    const t = await loadTestFile(task.file, task.defaultBackend);
    return {
      ok: true,
      name: t.name,
      nodes: t.nodes.map((n) => ({ name: n.name, backend: n.backend, memory: n.memory, cores: n.cores })),
      globalTimeout: t.globalTimeout,
      enableDebugHook: t.enableDebugHook,
      retries: t.retries,
    };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}
