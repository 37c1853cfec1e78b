// The terminal reporter on a real TTY (through `script`) and on a pipe.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { BIN, ROOT } from "./helpers/cli.ts";

test("a TTY gets a live status line; a pipe or CI=true gets plain lines", async () => {
  const env = { ...process.env, CI: "", GITHUB_ACTIONS: "", NO_COLOR: "1", TERM: "xterm" };
  delete (env as Record<string, string | undefined>).CI;
  // (script's pty has no size until stty gives it one; log-update draws nothing in 0 rows)
  const tty = await execa("script", ["-qec", `stty rows 40 cols 120; node ${BIN} run test/fixtures/suite -q --jobs 1`, "/dev/null"], { cwd: ROOT, env, extendEnv: false, reject: false });
  assert.match(tty.stdout, /▶ \d+\/2 done · \d+ running/, "the live status line is drawn on a TTY");
  assert.match(tty.stdout, /1 passed, 1 failed/);

  const piped = await execa("node", [BIN, "run", "test/fixtures/suite", "-q", "--jobs", "1"], { cwd: ROOT, env, extendEnv: false, reject: false });
  assert.doesNotMatch(piped.stdout, /▶/, "no status line on a pipe");
  assert.doesNotMatch(piped.stdout, /\x1b\[/, "no escape sequences on a pipe with NO_COLOR");
  assert.match(piped.stdout, /1 passed, 1 failed/);
});
