// Watch mode's import graph (esbuild's metafile) on real files: which tests a change touches,
// through nested helpers, require() and JSON; a file that stops parsing keeps what it loaded.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ImportGraph } from "../../orchestrator/watch/import-graph.ts";
import { ChangeDebouncer } from "../../orchestrator/watch/change-debouncer.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

const dir = tempDir("hp-import-graph-");
after(() => rmSync(dir, { recursive: true, force: true }));
const f = (p: string, text: string): string => {
  mkdirSync(join(dir, p, ".."), { recursive: true });
  writeFileSync(join(dir, p), text);
  return join(dir, p);
};

test("a change touches the tests that load the file, at any depth; packages and unrelated files touch none", async () => {
  const deep = f("lib/deep.ts", "export const d = 1;\n");
  const data = f("lib/data.json", '{"x": 1}\n');
  const helper = f("lib/helper.ts", 'import { d } from "./deep";\nimport data from "./data.json";\nexport const h = d + data.x;\n');
  const cjs = f("lib/old.cjs", "module.exports = 2;\n");
  const a = f("a.vmtest.ts", 'import { defineTest } from "haltpoint";\nimport { h } from "./lib/helper.ts";\nconst x = await Promise.resolve(h);\nexport default defineTest({ async testScript() {} });\n');
  const b = f("b.vmtest.cts", 'const old = require("./lib/old.cjs");\nexport default { old };\n');
  const lone = f("lib/unused.ts", "export const u = 0;\n");
  const graph = new ImportGraph();
  assert.deepEqual(await graph.update([a, b]), []);
  assert.deepEqual(graph.affectedBy([deep]), [a]);
  assert.deepEqual(graph.affectedBy([data]), [a]);
  assert.deepEqual(graph.affectedBy([helper, cjs]), [a, b]);
  assert.deepEqual(graph.affectedBy([b]), [b]);
  assert.deepEqual(graph.affectedBy([lone]), []);
  assert.ok(![...graph.allFiles()].some((p) => p.includes("haltpoint")), "packages are not followed");

  // Mid-edit, a file that does not parse keeps what it loaded (and says why).
  writeFileSync(a, 'import { h } from "./lib/helper.ts";\nexport default {{{\n');
  const errors = await graph.update([a]);
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.error, /a\.vmtest\.ts:\d+: /);
  assert.deepEqual(graph.affectedBy([deep]), [a]);
  // Fixed, without the helper: the helper no longer touches it.
  writeFileSync(a, "export default {};\n");
  assert.deepEqual(await graph.update([a]), []);
  assert.deepEqual(graph.affectedBy([deep]), []);
});

test("the debouncer hands over a burst of events once, after it goes quiet", async () => {
  const batches: string[][] = [];
  let got!: () => void;
  const once = new Promise<void>((r) => (got = r));
  const d = new ChangeDebouncer(30, (b) => {
    batches.push(b);
    got();
  });
  for (const p of ["/x/b", "/x/a", "/x/b", "/x/a"]) d.add(p);
  await once;
  assert.deepEqual(batches, [["/x/a", "/x/b"]]);
  d.close();
});
