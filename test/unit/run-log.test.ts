// The run log (orchestrator/reporters/run-log.ts) against the real file system: every run its
// own file with its own bindings, whether its files are made on libuv's pool (disk) or
// synchronously (tmpfs), a retry's lines in try2/, and an unwritable run dir said once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RunLogReporter } from "../../orchestrator/reporters/run-log.ts";
import type { PlannedRun } from "../../orchestrator/selection/plan.ts";
import { resultFromAttempts, type RunAttempt } from "../../orchestrator/results.ts";
import type { Notice } from "../../common/failure-kinds.ts";
import { tempDir } from "../helpers/temp-dirs.ts";
import { settled } from "../helpers/settled.ts";

const run = (index: number): PlannedRun => ({ key: `t#${index}`, index, test: { file: "/x/t.vmtest.ts", name: "t", nodes: [], globalTimeout: 60, enableDebugHook: false } });
const attempt = (n: number, outcome: "passed" | "failed", logDir: string): RunAttempt => ({ attempt: n, outcome, startedAt: Date.now(), durationMs: 1, logDir });
// On the pool a file exists (opened) a moment before its waiting lines are written: empty then.
const lines = (f: string) =>
  readFileSync(f, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

for (const inMemory of [false, true]) {
  test(`each run writes its own file with its own bindings (files made ${inMemory ? "synchronously" : "on the pool"})`, async () => {
    const root = tempDir("hp-runlog-");
    const log = new RunLogReporter(() => {}, inMemory);
    const dirs = [1, 2, 3].map((i) => join(root, `t#${i}`));
    // Interleaved, as runs at --jobs 3 are.
    for (const i of [1, 2, 3]) log.report({ kind: "run-start", run: run(i), logDir: dirs[i - 1]! });
    for (const i of [3, 1, 2]) log.report({ kind: "worker-event", run: run(i), event: { t: "log", time: Date.now(), msg: `from run ${i}` } });
    log.report({ kind: "retry", run: run(2), failed: attempt(1, "failed", dirs[1]!), next: 2, logDir: join(dirs[1]!, "try2") });
    log.report({ kind: "worker-event", run: run(2), event: { t: "log", time: Date.now(), msg: "second try" } });
    for (const i of [1, 2, 3]) log.report({ kind: "run-end", result: resultFromAttempts(run(i), i === 2 ? [attempt(1, "failed", dirs[1]!), attempt(2, "passed", join(dirs[1]!, "try2"))] : [attempt(1, "passed", dirs[i - 1]!)]) });
    // On the pool the files open a moment later; their lines wait in memory until then.
    const ended = (f: string) => existsSync(f) && lines(f).some((l) => l.event === "run-end");
    await settled(() => [join(dirs[0]!, "run.jsonl"), join(dirs[1]!, "try2", "run.jsonl"), join(dirs[2]!, "run.jsonl")].every(ended), Boolean);
    for (const i of [1, 3]) {
      assert.deepEqual(
        lines(join(dirs[i - 1]!, "run.jsonl")).map((l) => [l.test, l.run, l.file, l.event, l.msg]),
        [
          ["t", i, "/x/t.vmtest.ts", "run-start", "run started"],
          ["t", i, "/x/t.vmtest.ts", "log", `from run ${i}`],
          ["t", i, "/x/t.vmtest.ts", "run-end", "passed"],
        ],
      );
    }
    assert.deepEqual(
      lines(join(dirs[1]!, "run.jsonl")).map((l) => [l.run, l.event, l.attempt]),
      [
        [2, "run-start", undefined],
        [2, "log", undefined],
        [2, "attempt-end", 1],
      ],
    );
    assert.deepEqual(
      lines(join(dirs[1]!, "try2", "run.jsonl")).map((l) => [l.run, l.event, l.attempt, l.msg]),
      [
        [2, "run-start", 2, "attempt 2 started"],
        [2, "log", 2, "second try"],
        [2, "run-end", 2, "flaky: passed on attempt 2 after: "],
      ],
    );
  });

  test(`an unwritable run dir loses that log, said once, and the runs go on (files made ${inMemory ? "synchronously" : "on the pool"})`, async () => {
    const root = tempDir("hp-runlog-");
    const notFolder = join(root, "file");
    writeFileSync(notFolder, "");
    const notices: Notice[] = [];
    const log = new RunLogReporter((n) => notices.push(n), inMemory);
    for (const i of [1, 2]) log.report({ kind: "run-start", run: run(i), logDir: join(notFolder, `t#${i}`) });
    for (const i of [1, 2]) log.report({ kind: "run-end", result: resultFromAttempts(run(i), [attempt(1, "passed", join(notFolder, `t#${i}`))]) });
    // A third run in a writable dir, started after both: once its file is complete, both failed attempts are in.
    const ok = join(root, "t#3");
    log.report({ kind: "run-start", run: run(3), logDir: ok });
    log.report({ kind: "run-end", result: resultFromAttempts(run(3), [attempt(1, "passed", ok)]) });
    await settled(() => existsSync(join(ok, "run.jsonl")) && lines(join(ok, "run.jsonl")).length === 2, Boolean);
    assert.equal(notices.length, 1, JSON.stringify(notices));
    assert.deepEqual(notices[0], { kind: "run-log-truncated", error: "ENOTDIR", file: join(notFolder, "t#1", "run.jsonl") });
  });
}
