// The terminal reporter's `!!!` lines for a breakpoint come from the event alone: the
// sockets named in it, none read from the file system (its socket directory does not exist here).
import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { TerminalReporter } from "../../orchestrator/reporters/terminal.ts";
import type { PlannedRun } from "../../orchestrator/selection/plan.ts";
import type { BreakpointInfo } from "../../hooks/control/control-protocol.ts";

test("a breakpoint's ssh lines name exactly the sockets its event carries", () => {
  const out = new PassThrough();
  let text = "";
  out.on("data", (d: Buffer) => (text += d.toString()));
  const r = new TerminalReporter({ quiet: true, live: false, out });
  const run = { key: "t#1", index: 1, test: { name: "t" } } as unknown as PlannedRun;
  const info: BreakpointInfo = {
    id: "4444", key: "t#1", test: "t", run: 1, since: 0, host: "127.0.0.1", port: 4444,
    machines: ["a", "b"], frozen: ["a"], socketDir: "/nonexistent/hp-sockets", orchestratorPid: 1, reason: "boom\nstack",
    sockets: [{ machine: "b", path: "/nonexistent/hp-sockets/b_host.socket" }],
  };
  r.report({ kind: "breakpoint", run, info });
  assert.match(text, /!!! t#1: HALTED at breakpoint 4444: boom\n/);
  assert.match(text, /!!! t#1: machines: a \(frozen\), b \(not running\)/);
  assert.match(text, /!!! t#1: ssh b: \S+ ssh 4444 b\n/);
  assert.match(text, /!!! t#1: ssh b: ssh -o User=root vsock-mux\/\/nonexistent\/hp-sockets\/b_host\.socket\n/);
  assert.doesNotMatch(text, /ssh a:/, "a machine without a socket in the event gets no ssh line");
});
