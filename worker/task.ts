import { collectTest } from "./collect.ts";
import type { CollectResult, CollectTask, Outcome, RunTask } from "../common/events.ts";
import { runTest } from "./run-test.ts";
import { runOwnedBy } from "./late-errors.ts";

/** The piscina task handler: one task is either "collect a file" or "run a test once". */
export default function handleTask(task: RunTask | CollectTask): Promise<Outcome | CollectResult> {
  return task.kind === "collect" ? runOwnedBy(`loading ${task.file}`, (lateError) => collectTest(task, lateError)) : runOwnedBy(task.runKey ?? `${task.file}#${task.runIndex}`, (lateError) => runTest(task, lateError));
}
