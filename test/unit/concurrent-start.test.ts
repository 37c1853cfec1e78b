// A machine not started yet, asked for two commands at once: both wait for the one start
// (the second used to fail at once with "the machine is starting").
import assert from "node:assert/strict";
import { test } from "node:test";
import { LocalMachine } from "../../vm/local/local-machine.ts";
import { testMachineContext } from "../helpers/machine-context.ts";

test("two commands at once on a machine not started yet both succeed, after one start", async (t) => {
  const env = testMachineContext();
  const m = new LocalMachine("m", {}, env.ctx);
  t.after(async () => {
    await m.cleanup();
    env.cleanup();
  });
  const [a, b] = await Promise.all([m.succeed("echo a"), m.succeed("echo b")]);
  assert.deepEqual([a, b], ["a\n", "b\n"]);
  assert.equal(env.logs.filter((l) => l === "m: starting").length, 1, "one start, shared");
});

test("a start that fails fails every caller waiting on it, and a later start tries again", async (t) => {
  const env = testMachineContext();
  const m = new LocalMachine("m", {}, env.ctx);
  let fail = true;
  // The backend's own start, made to fail once: what a boot failure looks like to the callers.
  const doStart = (m as unknown as { doStart(): Promise<void> }).doStart.bind(m);
  (m as unknown as { doStart(): Promise<void> }).doStart = () => (fail ? Promise.reject(new Error("no boot")) : doStart());
  t.after(async () => {
    await m.cleanup();
    env.cleanup();
  });
  const both = await Promise.allSettled([m.succeed("true"), m.start()]);
  assert.deepEqual(both.map((r) => r.status), ["rejected", "rejected"]);
  assert.equal(m.state, "crashed");
  fail = false;
  await m.start();
  assert.equal(await m.succeed("echo again"), "again\n");
});
