// The folder rules `npm run lint` checks (tools/import-rules.ts, tools/check-imports.ts):
// this repository keeps them, and a forbidden import makes the lint command fail, naming it.
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { execa } from "execa";
import { describeForbidden, forbiddenImports } from "../../tools/check-imports.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

const ROOT = join(import.meta.dirname, "..", "..");

function tree(files: Record<string, string>): string {
  const dir = tempDir("hp-imports-");
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    writeFileSync(join(dir, f), text);
  }
  return dir;
}

test("this repository imports only what its folders may", () => {
  assert.deepEqual(forbiddenImports(ROOT).map(describeForbidden), []);
});

test("a machine that imports the orchestrator, or a worker that imports it, fails the lint command with the file, line and rule", async (t) => {
  const dir = tree({
    "vm/machine.ts": 'import { x } from "./poll.ts";\nimport { scheduler } from "../orchestrator/scheduling/scheduler.ts";\n',
    "vm/poll.ts": "export const x = 1;\n",
    "worker/run-test.ts": 'import type { Y } from "../common/events.ts";\nconst t = await import("../orchestrator/reporters/failure-text.ts");\n',
    "orchestrator/scheduling/scheduler.ts": 'import { Z } from "../../common/events.ts";\n',
  });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = await execa("node", ["--import", "tsx", join(ROOT, "tools/check-imports.ts"), dir], { reject: false, cwd: ROOT });
  assert.equal(r.exitCode, 1);
  const lines = r.stderr.split("\n");
  assert.match(lines[0]!, /^vm\/machine\.ts:2: imports orchestrator\/scheduling\/scheduler\.ts, but vm\/ may import only vm\/, common\/teardown\.ts, package-root\.ts: machines know nothing/);
  assert.match(lines[1]!, /^worker\/run-test\.ts:2: imports orchestrator\/reporters\/failure-text\.ts, but worker\/ may import only /, "a dynamic import counts too");
  assert.equal(lines[2], "check-imports: 2 forbidden imports");
});

test("the shared words may name a machine type but not run machine code; the repl command alone may load worker code", () => {
  const dir = tree({
    "common/events.ts": 'import type { QemuRuntime } from "../vm/qemu/qemu-machine.ts";\nimport { BaseMachine } from "../vm/machine.ts";\n',
    "orchestrator/commands/repl.ts": 'import { DriverApi } from "../../worker/driver-api.ts";\n',
    "orchestrator/commands/run.ts": 'import { DriverApi } from "../../worker/driver-api.ts";\n',
  });
  try {
    assert.deepEqual(
      forbiddenImports(dir).map((b) => `${b.file}:${b.line} ${b.target}`),
      ["common/events.ts:2 vm/machine.ts", "orchestrator/commands/run.ts:1 worker/driver-api.ts"],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
