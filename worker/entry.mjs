// The piscina worker entry. Plain JavaScript on purpose, one file for haltpoint's sources
// and its compiled dist/: on Node 20 tsx's ESM hook is not active inside worker threads, so
// it is registered here before anything TypeScript is imported (the test files, and
// haltpoint's own worker modules when the orchestrator runs from sources). The pool says
// which task module to load (orchestrator/scheduling/pool.ts).
import { register } from "node:module";
import { workerData } from "node:worker_threads";
import { register as registerTsx } from "tsx/esm/api";

registerTsx();
// Both hooks run on this thread's one loader thread (no second one is started).
register("./resolve-haltpoint.mjs", import.meta.url, { data: { haltpointIndex: workerData.haltpointIndex } });
const { default: handleTask } = await import(workerData.taskModule);

export default handleTask;
