import type { CollectResult, CollectTask } from "../../common/events.ts";
import { recycledWorker } from "./pool.ts";
import type { LoadError, PlannedTest } from "../selection/plan.ts";

/**
 * Load every file in a worker (a file that throws or exits cannot take the orchestrator down)
 * and learn what it declares. At most `threads` files at a time, the threads the pool keeps
 * (--jobs): more tasks queued than threads would make the pool start its extra threads (kept
 * for halted tests), each loading tsx and haltpoint again on a CPU the collection needs — 24
 * files took 2.1 s instead of 0.5 s on one job, a queue host's whole start (bench:fleet).
 */
export async function collectTests(pool: { run(task: CollectTask): Promise<unknown> }, files: string[], defaultBackend: string, threads: number): Promise<{ tests: PlannedTest[]; loadErrors: LoadError[] }> {
  const collectOne = async (file: string): Promise<CollectResult> => {
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
  };
  const results: CollectResult[] = new Array(files.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      results[i] = await collectOne(files[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(threads, files.length)) }, lane));
  const tests: PlannedTest[] = [];
  const loadErrors: LoadError[] = [];
  results.forEach((r, i) => {
    const file = files[i]!;
    if (r.ok) tests.push({ file, name: r.name, nodes: r.nodes, globalTimeout: r.globalTimeout, enableDebugHook: r.enableDebugHook, retries: r.retries ?? 0 });
    else loadErrors.push({ file, error: r.error });
  });
  return { tests, loadErrors };
}
