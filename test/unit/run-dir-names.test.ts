// Test names → directory names under --log-dir (common/run-dir-names.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_DIR_NAME, assignDirNames, dirNameFor } from "../../common/run-dir-names.ts";
import type { PlannedTest } from "../../orchestrator/selection/plan.ts";

const planned = (name: string): PlannedTest => ({ file: `${name}.vmtest.ts`, name, nodes: [], globalTimeout: 1, enableDebugHook: false });

test("a safe name is its own directory; anything else is one path component with a hash", () => {
  assert.equal(dirNameFor("web-server_2.1"), "web-server_2.1");
  for (const name of ["../../x", "/etc/evil", "a/b/c", "..", ".", "", "-rf", "x\0y", "ü", "n".repeat(300)]) {
    const d = dirNameFor(name);
    assert.match(d, /^[A-Za-z0-9_][A-Za-z0-9._-]*-[0-9a-f]{8}$/, `${JSON.stringify(name)} -> ${d}`);
    assert.ok(d.length <= MAX_DIR_NAME, d);
  }
});

test("names that slug alike, or differ only in case, get distinct directories, whatever the order", () => {
  const results: Record<string, string>[] = [];
  for (const order of [["x", "./x", "foo/../x", "X", "x_"], ["x_", "X", "foo/../x", "./x", "x"]]) {
    const tests = order.map(planned);
    assignDirNames(tests);
    const dirs = tests.map((t) => t.dirName!.toLowerCase());
    assert.equal(new Set(dirs).size, dirs.length, dirs.join(" "));
    assert.equal(tests.find((t) => t.name === "x_")!.dirName, "x_", "a plain name keeps its plain directory");
    results.push(Object.fromEntries(tests.map((t) => [t.name, t.dirName!])));
  }
  assert.deepEqual(results[0], results[1], "the same names get the same directories in any order");
});
