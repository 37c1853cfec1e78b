// A JSON report read back (haltpoint merge, --durations, --rerun-failed) may come from anyone:
// its shape is checked down to the fields the readers use, and its size before it is read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readReport } from "../../orchestrator/commands/merge.ts";
import { MAX_REPORT_BYTES } from "../../orchestrator/reporters/report-shape.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

const good = {
  format: "haltpoint-report",
  version: 2,
  startedAt: "2026-12-04T10:00:00.000Z",
  durationMs: 1000,
  shard: null,
  tests: [{ name: "t", file: "t.vmtest.ts", retries: 0, notRun: [], runs: [{ run: 1, key: "t#1", outcome: "passed", startedAt: "2026-12-04T10:00:00.000Z", durationMs: 12, logDir: "logs/t-1", attempts: [{ attempt: 1, outcome: "passed", startedAt: "2026-12-04T10:00:00.000Z", durationMs: 12, logDir: "logs/t-1" }] }] }],
  loadErrors: [],
};

test("a report from elsewhere: each wrong field is one line naming the file and the field; an oversized one is not read", async () => {
  const dir = tempDir("hp-report-shape-");
  try {
    const file = join(dir, "r.json");
    const write = (edit: (r: any) => void): string => {
      const r = structuredClone(good);
      edit(r);
      writeFileSync(file, JSON.stringify(r));
      return file;
    };
    assert.equal((await readReport(write(() => {}))).report.tests.length, 1);
    const refused: Array<[(r: any) => void, string]> = [
      [(r) => (r.tests[0].runs[0].durationMs = "12; rm -rf ~"), "tests[0].runs[0].durationMs: must be a number ≥ 0"],
      [(r) => (r.tests[0].runs[0].attempts[0].outcome = "maybe"), 'tests[0].runs[0].attempts[0].outcome: must be "passed" or "failed"'],
      [(r) => (r.tests[0].name = { toString: 1 }), "tests[0].name: must be a string"],
      [(r) => (r.tests[0].runs = {}), "tests[0].runs: must be a list"],
      [(r) => (r.shard = { index: "1", total: 3 }), "shard.index: must be an integer ≥ 0"],
      [(r) => (r.startedAt = "yesterday"), "startedAt: must be a time (ISO 8601)"],
    ];
    for (const [edit, field] of refused) {
      await assert.rejects(readReport(write(edit)), (e: Error) => {
        assert.equal(e.message, `${file}: ${field} (not a haltpoint JSON report as haltpoint run --json writes it)`);
        return true;
      });
    }
    const big = join(dir, "big.json");
    writeFileSync(big, "");
    truncateSync(big, MAX_REPORT_BYTES + 1); // sparse: nothing is written, and nothing may be read
    await assert.rejects(readReport(big), { message: `${big}: ${MAX_REPORT_BYTES + 1} bytes, over the ${MAX_REPORT_BYTES}-byte limit of a report` });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
