// haltpoint runs from dist/ when that is fresh, else from its sources; the test files'
// `import "haltpoint"` follows, and V8's flags are haltpoint's own choice (orchestrator/v8-flags.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { distIsFresh } from "../bin/dist-is-fresh.mjs";
import { v8FlagsFor } from "../orchestrator/v8-flags.ts";
import { haltpoint, ROOT } from "./helpers/cli.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const FIXTURE = "test/fixtures/identity/identity.vmtest.ts";

test("from dist/, a test file's haltpoint is the compiled copy the worker runs (instanceof MachineError holds)", async () => {
  assert.ok(distIsFresh(pathToFileURL(ROOT + "/")), "dist/ is older than the sources: run `npm run build` (npm test does)");
  const r = await haltpoint(["run", FIXTURE, "--log-dir", tempDir("hp-compiled-")]);
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, new RegExp(`identity#1: haltpoint is ${pathToFileURL(join(ROOT, "dist/index.js")).href}\\n`));
  assert.match(r.all, /identity#1: caught a MachineError/);
});

test("HALTPOINT_FROM_SOURCE=1 runs the TypeScript sources, and test files get index.ts", async () => {
  const r = await haltpoint(["run", FIXTURE, "--log-dir", tempDir("hp-compiled-")], { env: { HALTPOINT_FROM_SOURCE: "1" } });
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, new RegExp(`identity#1: haltpoint is ${pathToFileURL(join(ROOT, "index.ts")).href}\\n`));
  assert.match(r.all, /identity#1: caught a MachineError/);
});

test("HALTPOINT_V8_JIT=1 keeps V8's compilers; by default haltpoint runs V8's interpreter only", async () => {
  assert.ok(v8FlagsFor({}).includes("--no-opt"));
  assert.ok(v8FlagsFor({}).includes("--no-sparkplug"));
  assert.ok(!v8FlagsFor({ HALTPOINT_V8_JIT: "1" }).some((f) => f.startsWith("--no-")));
  assert.ok(v8FlagsFor({ HALTPOINT_V8_JIT: "1" }).includes("--optimize-for-size"));
  const r = await haltpoint(["run", FIXTURE, "--log-dir", tempDir("hp-compiled-")], { env: { HALTPOINT_V8_JIT: "1" } });
  assert.equal(r.exitCode, 0, r.all);
});

test("distIsFresh: dist/ counts only when every source has a compiled file at least as new", () => {
  const root = tempDir("hp-fresh-");
  const url = pathToFileURL(root + "/");
  const write = (rel: string, mtime: number) => {
    const p = join(root, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, "");
    utimesSync(p, mtime, mtime);
  };
  try {
    for (const f of ["index.ts", "package-root.ts", "orchestrator/cli.ts", "worker/task.ts", "vm/local/local-machine.ts", "hooks/telnet.ts", "vm/types.d.ts"]) write(f, 1000);
    assert.equal(distIsFresh(url), false, "no dist/ at all");
    for (const f of ["index.js", "package-root.js", "orchestrator/cli.js", "worker/task.js", "vm/local/local-machine.js", "hooks/telnet.js"]) write(`dist/${f}`, 2000);
    assert.equal(distIsFresh(url), true, "every source compiled later (a .d.ts needs no .js)");
    write("vm/local/local-machine.ts", 3000);
    assert.equal(distIsFresh(url), false, "a source edited after the build");
    write("dist/vm/local/local-machine.js", 3000);
    assert.equal(distIsFresh(url), true);
    write("hooks/new-module.ts", 1000);
    assert.equal(distIsFresh(url), false, "a source that was never compiled");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
