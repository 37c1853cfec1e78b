// The backdoor shell protocol against a real bash (the same framing drives a guest's hvc0).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { BackdoorShell, ShellClosedError, ShellTimeoutError, ansiCQuote } from "../../vm/backdoor-shell.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

function startShell(prelude = "") {
  const dir = tempDir("hp-bs-");
  const proc = spawn("bash", ["-c", `${prelude}exec bash --norc --noprofile -s`], { stdio: ["pipe", "pipe", "pipe"], detached: true });
  let stderr = "";
  proc.stderr.on("data", (c) => (stderr += c));
  const noise: string[] = [];
  const shell = new BackdoorShell(proc.stdin, proc.stdout, (l) => noise.push(l));
  return {
    shell,
    proc,
    noise,
    stderr: () => stderr,
    out: join(dir, "out"),
    done: () => {
      try {
        process.kill(-proc.pid!, "SIGKILL"); // the whole group: background sleeps too
      } catch {}
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test("ansiCQuote round-trips every awkward character through bash", async () => {
  const s = startShell();
  try {
    await s.shell.init(s.out, 5000);
    const nasty = `it's "quoted" \\ back\\slash $HOME \`tick\` !bang\ttab\nnew line ünïcødé ✓ \x01\x7f`;
    const r = await s.shell.run(`printf %s ${ansiCQuote(nasty)}`, 5000);
    assert.equal(r.status, 0);
    assert.equal(r.stdout.toString("utf8"), nasty);
  } finally {
    s.done();
  }
});

test("exit status is exact and stdout is binary-safe, including NUL bytes and 10 MB", async () => {
  const s = startShell();
  try {
    await s.shell.init(s.out, 5000);
    for (const code of [0, 1, 2, 42, 255]) assert.equal((await s.shell.run(`exit ${code}`, 5000)).status, code);
    assert.equal((await s.shell.run("kill -9 $BASHPID", 5000)).status, 137, "a killed command reports 128+signal");
    const bin = await s.shell.run("printf 'a\\0b\\377\\n'", 5000);
    assert.deepEqual([...bin.stdout], [0x61, 0, 0x62, 0xff, 0x0a]);
    const big = await s.shell.run("head -c 10485760 /dev/zero | tr '\\0' 'x'; printf END", 30000);
    assert.equal(big.stdout.length, 10485760 + 3);
    assert.equal(big.stdout.subarray(-3).toString(), "END");
    // set -euo pipefail, as in the NixOS driver: the first failing command ends it.
    assert.equal((await s.shell.run("false; echo not reached", 5000)).stdout.length, 0);
    assert.equal((await s.shell.run("false | true", 5000)).status, 1);
  } finally {
    s.done();
  }
});

test("stderr stays on the shell's stderr (the console), not in stdout", async () => {
  const s = startShell();
  try {
    await s.shell.init(s.out, 5000);
    const r = await s.shell.run("echo to-out; echo to-err >&2", 5000);
    assert.equal(r.stdout.toString(), "to-out\n");
    await new Promise((res) => setTimeout(res, 50));
    assert.match(s.stderr(), /to-err/);
  } finally {
    s.done();
  }
});

test("lines that are not frames (echo, prompts) are ignored and reported as noise", async () => {
  // A shell that chatters on stdout before the protocol starts, like a tty with echo on.
  const s = startShell("echo 'Spawning backdoor root shell...'; echo '$ prompt'; ");
  try {
    await s.shell.init(s.out, 5000);
    assert.equal((await s.shell.run("echo ok", 5000)).stdout.toString(), "ok\n");
    assert.ok(s.noise.includes("Spawning backdoor root shell..."), `noise: ${JSON.stringify(s.noise)}`);
  } finally {
    s.done();
  }
});

test("a background daemon cannot hold the answer hostage", async () => {
  const s = startShell();
  try {
    await s.shell.init(s.out, 5000);
    const r = await s.shell.run("sleep 30 & echo started", 5000);
    assert.equal(r.stdout.toString(), "started\n");
  } finally {
    s.done();
  }
});

test("a timeout fails that command, calls the killer, and the next command still works", async () => {
  const s = startShell();
  try {
    await s.shell.init(s.out, 5000);
    let killed = false;
    await assert.rejects(
      s.shell.run("sleep 2; echo late", 200, () => (killed = true)),
      (e: Error) => e instanceof ShellTimeoutError && /0.2 s/.test(e.message),
    );
    assert.ok(killed);
    const r = await s.shell.run("echo next", 5000);
    assert.equal(r.stdout.toString(), "next\n", "the late answer of the timed-out command is not taken for this one");
  } finally {
    s.done();
  }
});

test("a shell that dies rejects what is pending and everything after", async () => {
  const s = startShell();
  try {
    await s.shell.init(s.out, 5000);
    const pending = s.shell.run("sleep 10", 20000);
    setTimeout(() => s.proc.kill("SIGKILL"), 100);
    await assert.rejects(pending, ShellClosedError);
    await assert.rejects(s.shell.run("true", 1000), ShellClosedError);
  } finally {
    s.done();
  }
});

test("commands with NUL bytes are refused with a clear error", async () => {
  const s = startShell();
  try {
    await s.shell.init(s.out, 5000);
    await assert.rejects(s.shell.run("echo a\0b", 1000), /NUL/);
  } finally {
    s.done();
  }
});

test("a reply split at every byte, and a reply with more in its chunk, decode exactly (the chunked reader, #17 item 6)", async () => {
  const { PassThrough } = await import("node:stream");
  const input = new PassThrough();
  const output = new PassThrough();
  const noise: string[] = [];
  const shell = new BackdoorShell(input, output, (l) => noise.push(l));
  const body = Buffer.from("x".repeat(1000) + "\u2713 end", "utf8");
  const b64 = body.toString("base64").replace(/(.{76})/g, "$1\n");
  // Reply 1 one byte at a time (the end marker split everywhere).
  const first = shell.run("a", 0);
  await new Promise((r) => setImmediate(r)); // run() sends from its queue
  for (const ch of `noise\n\x1eHP 1 0 B\n${b64}\n\x1eEND 1\n`) output.write(Buffer.from(ch, "latin1"));
  const r1 = await first;
  assert.deepEqual(r1.stdout, body);
  assert.equal(r1.status, 0);
  // Reply 2 with the next line in the same chunk.
  const second = shell.run("b", 0);
  await new Promise((r) => setImmediate(r));
  output.write(Buffer.from(`\x1eHP 2 3 B\n${Buffer.from("two").toString("base64")}\n\x1eEND 2\nafter\n`, "latin1"));
  const r2 = await second;
  assert.equal(r2.stdout.toString(), "two");
  assert.equal(r2.status, 3);
  const third = shell.run("c", 0);
  await new Promise((r) => setImmediate(r));
  output.write(Buffer.from("\x1eHP 3 0 E\n", "latin1"));
  assert.equal((await third).stdout.length, 0);
  assert.deepEqual(noise, ["noise", "after"]);
  shell.close(new ShellClosedError("done"));
});
