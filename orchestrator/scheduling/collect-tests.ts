import type { CollectResult, CollectTask } from "../../common/events.ts";
import { recycledWorker } from "./pool.ts";
import type { LoadError, PlannedTest } from "../selection/plan.ts";

/** Load every file in a worker (a file that throws or exits cannot take the orchestrator down) and learn what it declares. */
export async function collectTests(pool: { run(task: CollectTask): Promise<unknown> }, files: string[], defaultBackend: string): Promise<{ tests: PlannedTest[]; loadErrors: LoadError[] }> {
  const results = await Promise.all(
    files.map(async (file): Promise<CollectResult> => {
      const task: CollectTask = { kind: "collect", file, defaultBackend };
      for (let tries = 1; ; tries++) {
        try {
          return (await pool.run(task)) as CollectResult;
        } catch (e) {
          // A worker recycling itself after a late error (worker/late-errors.ts) may just have been handed this file.
          if (recycledWorker(e) && tries < 3) continue;
          return { ok: false, error: `${file}: cannot load: ${(e as Error).message}` };
        }
      }
    }),
  );
  const tests: PlannedTest[] = [];
  const loadErrors: LoadError[] = [];
  results.forEach((r, i) => {
    const file = files[i]!;
    if (r.ok) tests.push({ file, name: r.name, nodes: r.nodes, globalTimeout: r.globalTimeout, enableDebugHook: r.enableDebugHook, retries: r.retries ?? 0 });
    else loadErrors.push({ file, error: r.error });
  });
  return { tests, loadErrors };
}
