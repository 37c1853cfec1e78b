// freeze() stops a machine dead (that is what a breakpoint does to a failing test);
// thaw() lets it go on as if nothing happened.
import { defineTest } from "haltpoint";

export default defineTest({
  name: "freeze-thaw",
  nodes: { ticker: {} },
  async testScript({ ticker }) {
    await ticker.start();
    await ticker.succeed("rm -f /tmp/ticks; (while :; do echo t >> /tmp/ticks; sleep 0.1; done) >/dev/null 2>&1 &");
    await ticker.waitUntilSucceeds("test -s /tmp/ticks", { timeout: 30 });

    await ticker.freeze();
    await new Promise((r) => setTimeout(r, 1000));
    await ticker.thaw();

    // While frozen nothing ran: at most a tick or two of difference since the freeze.
    const before = Number((await ticker.succeed("wc -l < /tmp/ticks")).trim());
    await ticker.waitUntilSucceeds(`test $(wc -l < /tmp/ticks) -gt ${before}`, { timeout: 30 });
  },
});
