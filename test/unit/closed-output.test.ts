// `haltpoint run … | head -1`: the reader leaves after one line; the run still ends by
// itself with its own status and writes its report (before: EPIPE crashed it, no report).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { BIN, ROOT } from "../helpers/cli.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

test("a reader that goes away (| head -1) neither crashes the run nor loses its report", async () => {
  const dir = tempDir("hp-epipe-");
  try {
    const report = join(dir, "r.json");
    const r = await execa("bash", ["-c", `set -o pipefail; node ${BIN} run test/fixtures/suite --log-dir ${dir}/l --json ${report} 2>${dir}/err | head -1; echo "status \${PIPESTATUS[0]}"`], {
      cwd: ROOT,
      reject: false,
      env: { CI: "true", NO_COLOR: "1" },
      timeout: 120_000,
    });
    const err = readFileSync(join(dir, "err"), "utf8");
    assert.doesNotMatch(err, /EPIPE|internal error/, err);
    // The suite has one failing test: status 1, as without the pipe.
    assert.match(r.stdout, /\nstatus 1$/, r.stdout);
    assert.ok(existsSync(report), "the JSON report was written");
    const json = JSON.parse(readFileSync(report, "utf8")) as { results?: unknown[]; runs?: unknown[] };
    assert.ok(JSON.stringify(json).includes("pass"), "the report has the results");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
