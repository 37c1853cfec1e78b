// Failure kinds as data (common/failure-kinds.ts): the JSON report tells what ended
// each failed attempt, and why runs stopped being started, without matching its words.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runCommand } from "../../orchestrator/commands/run.ts";
import { failureReason, noticeText } from "../../orchestrator/reporters/failure-text.ts";
import type { Notice } from "../../common/failure-kinds.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const tmp = () => tempDir("hp-kinds-");

async function run(extra: { untilFail?: boolean; jobs?: number } = {}): Promise<{ status: number; report: any; notices: Notice[] }> {
  const dir = tmp();
  const notices: Notice[] = [];
  const status = await runCommand({
    paths: [join(ROOT, "test/fixtures/kinds")],
    jobs: extra.jobs ?? 3,
    backend: "local",
    repeat: 1,
    untilFail: extra.untilFail ?? false,
    quiet: true,
    abortGrace: 5,
    logDir: join(dir, "logs"),
    json: join(dir, "report.json"),
    terminal: false,
    reporters: [{ report: (e) => void (e.kind === "notice" && notices.push(e.notice)) }],
  });
  return { status, report: JSON.parse(readFileSync(join(dir, "report.json"), "utf8")), notices };
}

test("three different failures have three different kinds in the JSON report, with their messages and the old fields", async () => {
  const { status, report } = await run();
  assert.equal(status, 1);
  const byName = new Map<string, any>(report.tests.map((t: any) => [t.name, t.runs[0]]));
  const kind = (name: string) => byName.get(name)?.attempts[0]?.failure?.kind;
  assert.equal(kind("kind-command"), "command-failed");
  assert.equal(kind("kind-assertion"), "assertion");
  assert.equal(kind("kind-timeout"), "global-timeout");

  const timeout = byName.get("kind-timeout").attempts[0];
  assert.equal(timeout.failure.seconds, 1, "a kind carries its own fields");
  assert.equal(timeout.failure.message, "global timeout of 1 s exceeded");
  assert.equal(timeout.reason, "global timeout of 1 s exceeded", "the version-2 `reason` is still there");
  const command = byName.get("kind-command").attempts[0];
  assert.match(command.failure.message, /machine m: command `exit 3` failed \(exit code 3\)/);
  assert.equal(command.reason, undefined, "a failure of the script's own has no orchestrator reason");
  assert.equal(command.error.message, command.failure.message, "the old `error` field stays");
  assert.equal(byName.get("kind-assertion").failure.kind, "assertion", "the run carries its last failure too");
  assert.equal(report.stoppedBy, null, "nothing stopped admission");
});

test("--until-fail: the report says admission stopped, and which run stopped it", async () => {
  const { report, notices } = await run({ untilFail: true, jobs: 1 });
  assert.equal(report.stoppedBy?.kind, "until-fail");
  assert.match(report.stoppedBy.run, /^kind-\w+#1$/);
  assert.equal(report.stoppedBy.message, `--until-fail: ${report.stoppedBy.run} failed; starting no more runs`);
  const stop = notices.find((n) => n.kind === "stopped");
  assert.deepEqual(stop && stop.kind === "stopped" && stop.stop, { kind: "until-fail", run: report.stoppedBy.run, flaky: false });
  assert.ok(report.summary.notRun >= 1, "a run was left unstarted");
});

test("the words: an abort the script then saw differently, leftovers after it, and notices", () => {
  assert.equal(
    failureReason({ kind: "global-timeout", seconds: 5, also: [{ kind: "worker-killed", graceMs: 2000 }, { kind: "leftovers", machines: ["a", "b"] }], scriptSaw: "machine a: gone" }),
    "global timeout of 5 s exceeded; worker killed after 2 s; killed leftover processes of a, b (the script then saw: machine a: gone)",
  );
  assert.equal(failureReason({ kind: "interrupted", signal: "SIGINT", scriptSaw: "interrupted (SIGINT)" }), "interrupted (SIGINT)", "the abort's own words are not said twice");
  assert.equal(failureReason({ kind: "command-failed", also: [{ kind: "leftovers", machines: ["m"] }] }), "killed leftover processes of m", "only the orchestrator's causes are its reason");
  assert.equal(failureReason({ kind: "assertion" }), undefined);
  assert.equal(noticeText({ kind: "stopped", stop: { kind: "max-fail", limit: 3, run: "t#9", flaky: true } }), "--max-fail 3: t#9 was flaky (--flaky-fails) (3 failed runs); starting no more runs");
});
