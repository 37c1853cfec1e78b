#!/usr/bin/env node
// haltpoint runs from its compiled dist/ (`npm run build`, done by `npm ci`) when that is
// up to date with the sources, else from the TypeScript sources through tsx (also when
// HALTPOINT_FROM_SOURCE=1). dist/ spares the main thread tsx's loader thread, about 20 MiB
// of the run's resident memory (bench/dispatch's CLI rows).
import { distIsFresh } from "./dist-is-fresh.mjs";

// Ctrl-C or SIGTERM while haltpoint loads: exit 130 (interrupted), never 0. `haltpoint run`
// replaces this with its own handlers (orchestrator/startup-signals.ts) once it can stop a run.
const onStartupSignal = (sig) => {
  process.stderr.write(`haltpoint: ${sig} during startup: interrupted\n`);
  process.exit(130);
};
onStartupSignal.haltpointStartupSignalHandler = true;
process.on("SIGINT", onStartupSignal);
process.on("SIGTERM", onStartupSignal);

// Each module is imported as sources (.ts, through tsx) or compiled (dist/, .js).
let load;
if (process.env.HALTPOINT_FROM_SOURCE !== "1" && distIsFresh(new URL("../", import.meta.url))) {
  load = (module) => import(`../dist/${module}.js`);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  load = (module) => import(`../${module}.ts`);
}
// First, before anything else runs: V8's flags for every isolate of the run.
(await load("orchestrator/v8-flags")).applyV8Flags();
const cli = await load("orchestrator/cli");
try {
  process.exitCode = await cli.main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`haltpoint: internal error: ${e instanceof Error ? e.stack : e}\n`);
  process.exitCode = 70;
}
