// Subtests structure a test's log; waits poll (once a second) until something happens.
import { defineTest } from "haltpoint";

export default defineTest({
  name: "subtests-and-waits",
  nodes: { worker: {} },
  globalTimeout: 120,
  async testScript({ worker, subtest, retry }) {
    await worker.start();

    await subtest("a file appears later", async () => {
      await worker.succeed("(sleep 1; echo done > result) >/dev/null 2>&1 &");
      await worker.waitForFile("result", { timeout: 30 });
      await worker.succeed("grep -q done result");
    });

    await subtest("a command starts to succeed", async () => {
      await worker.succeed("rm -f ready; (sleep 1; touch ready) >/dev/null 2>&1 &");
      await worker.waitUntilSucceeds("test -e ready", { timeout: 30 });
    });

    await subtest("the console shows a message", async () => {
      // A command's stderr goes to the machine's console (its serial console on qemu).
      await worker.succeed("(sleep 1; echo 'service is up' >&2) &");
      await worker.waitForConsoleText(/service is up/, { timeout: 30 });
    });

    await subtest("retry() polls a condition of your own", async () => {
      let attempts = 0;
      await retry(async () => ++attempts >= 2, { timeout: 30 });
    });
  },
});
