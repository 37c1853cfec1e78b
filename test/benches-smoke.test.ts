// Every `npm run bench:*` at its smoke scale (HP_BENCH_SMOKE=1, bench/smoke.ts): a bench that
// breaks fails CI (issue #29: bench:dispatch broke unnoticed). Each bench's output streams into
// this log as it runs; what is asserted is only that it finished and printed a table. The
// figures at this scale mean nothing and are never asserted (docs/benchmarks.md has the real ones).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { execa } from "execa";
import { ROOT } from "./helpers/cli.ts";
import { qemuProcesses } from "./helpers/qemu.ts";

const scripts = Object.keys((JSON.parse(readFileSync(`${ROOT}/package.json`, "utf8")) as { scripts: Record<string, string> }).scripts).filter((s) => s.startsWith("bench:"));

test("package.json has the benches this file runs", () => {
  assert.ok(scripts.length >= 8, scripts.join(" "));
});

for (const script of scripts) {
  test(`npm run ${script} at smoke scale finishes and prints its tables`, async (t) => {
    // The Debian bench builds its image (cached for the rest of CI) as root.
    if (script === "bench:debian" && process.getuid?.() !== 0) return t.skip("building a Debian image needs root");
    const before = new Set(await qemuProcesses());
    const t0 = performance.now();
    const child = execa("npm", ["run", "--silent", script], { cwd: ROOT, reject: false, all: true, env: { HP_BENCH_SMOKE: "1", NO_COLOR: "1" }, timeout: 600_000 });
    let out = "";
    child.all!.on("data", (c: Buffer) => {
      out += c;
      process.stdout.write(c);
    });
    const r = await child;
    t.diagnostic(`${script}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(r.exitCode, 0, `${script} exited ${r.exitCode}${r.timedOut ? " (timed out)" : ""}:\n${out.slice(-4000)}`);
    assert.match(out, /^\|-+\|/m, `${script} printed no table`);
    const left = (await qemuProcesses()).filter((p) => !before.has(p));
    assert.deepEqual(left, [], `${script} left QEMU behind`);
  });
}
