// The test context's types say what exists: `machine` (NixOS's single-node alias) only in a
// test with one node; a screen only on a qemu node. tsc itself checks a fixture and must report exactly that error.
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { execa } from "execa";
import { tempDir } from "../helpers/temp-dirs.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const FIXTURE = "test/fixtures/broken/types/machine-alias.ts";

test("a two-node test that uses `machine` does not type-check, nor a local node's `screenshot`; a one-node test and a qemu node's screen do", async (t) => {
  const dir = tempDir(".tsc-types-", ROOT);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, "tsconfig.json");
  writeFileSync(config, JSON.stringify({ extends: "../tsconfig.json", compilerOptions: { noEmit: true, rootDir: ".." }, include: [], files: [`../${FIXTURE}`] }));
  const r = await execa("npx", ["tsc", "-p", config], { cwd: ROOT, reject: false, all: true });
  const errors = r.all.split("\n").filter((l) => /error TS\d+/.test(l));
  assert.equal(errors.length, 2, r.all);
  assert.match(errors[0]!, /machine-alias\.ts\(14,22\): error TS2339: Property 'machine' does not exist on type/);
  assert.match(errors[1]!, /machine-alias\.ts\(24,15\): error TS2339: Property 'screenshot' does not exist on type 'Machine'/);
});
