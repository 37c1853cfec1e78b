#!/usr/bin/env node
// haltpoint runs from its TypeScript sources through tsx (test files are TypeScript too).
import { register } from "tsx/esm/api";

register();
const { main } = await import("../orchestrator/cli.ts");
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`haltpoint: internal error: ${e instanceof Error ? e.stack : e}\n`);
  process.exitCode = 70;
}
