#!/usr/bin/env node
// haltpoint runs from its TypeScript sources through tsx (test files are TypeScript too).
import { setFlagsFromString } from "node:v8";
import { register } from "tsx/esm/api";

// The main thread mostly relays small messages: a 1 MiB semi-space keeps its peak RSS
// about 25 MiB lower (measured with bench/dispatch's CLI RSS row).
setFlagsFromString("--max-semi-space-size=1");

register();
const { main } = await import("../orchestrator/cli.ts");
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`haltpoint: internal error: ${e instanceof Error ? e.stack : e}\n`);
  process.exitCode = 70;
}
