// Breakpoint bundles with real guests, through the real CLI: a CI-like run (no TTY, CI=true)
// of a failing two-guest test ends by itself with a bundle; the bundle, copied elsewhere, is
// revived with an empty cache, its guests frozen as they were (a tmpfs file, a process, the
// network between them), with the original error, the console and SSH; `haltpoint save` on
// that (live) breakpoint writes another bundle; damaged and other-QEMU bundles are refused.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { BIN, haltpoint, watchOutput } from "./helpers/cli.ts";
import { qemuProcesses } from "./helpers/qemu.ts";
import { Peer } from "./fixtures/hooks/peer.ts";
import { signBundle } from "../hooks/bundles/bundle-signature.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const base = tempDir("hp-bundle-");
after(() => rmSync(base, { recursive: true, force: true }));
const emptyCache = join(base, "empty-cache");
mkdirSync(emptyCache);
// The user's own bundle-signing key (hooks/bundles/bundle-signature.ts) lives here, for every haltpoint this file runs.
process.env.XDG_CONFIG_HOME = join(base, "config");

/** One console session through netcat: each line, then the prompt that ends its answer. */
async function consoleSession(port: string, lines: string[]): Promise<string> {
  const nc = new Peer("nc", ["127.0.0.1", port]);
  try {
    await nc.expect(/> $/m, 20_000);
    for (const l of lines) {
      nc.send(l + "\n");
      await nc.expect(/> $/m, 60_000);
    }
    return nc.output;
  } finally {
    nc.child.kill();
  }
}

function modesUnder(dir: string): Array<{ path: string; mode: number; isDir: boolean }> {
  const out = [{ path: dir, mode: statSync(dir).mode & 0o777, isDir: true }];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...modesUnder(p));
    else out.push({ path: p, mode: statSync(p).mode & 0o777, isDir: false });
  }
  return out;
}

let bundle = "";

/**
 * A bundle is untrusted input: bundles crafted from a real one as an attacker would (QEMU
 * options in the manifest, a file name out of the bundle, a symbolic link out, a file larger
 * than the manifest says, the old format) are each refused in one line before anything runs,
 * and create nothing on the host: no file at the paths they name, no state or log directory,
 * no QEMU.
 */
async function craftedBundles(good: string): Promise<void> {
  const stateDir = join(base, "crafted-state");
  const cwd = join(base, "crafted-cwd");
  mkdirSync(stateDir);
  mkdirSync(cwd);
  const pidfile = join(base, "pidfile-a-bundle-asked-for");
  const marker = join(base, "guestfwd-command-ran");
  const craft = (name: string, edit: (m: Record<string, any>, dir: string) => void): string => {
    const dir = join(base, name);
    cpSync(good, dir, { recursive: true });
    const m = JSON.parse(readFileSync(join(dir, "bundle.json"), "utf8"));
    const before = JSON.stringify(m);
    edit(m, dir);
    if (JSON.stringify(m) !== before) writeFileSync(join(dir, "bundle.json"), JSON.stringify(m));
    return dir;
  };
  const revive = async (dir: string): Promise<string> => {
    const r = await execa("node", [BIN, "revive", dir], { reject: false, all: true, cwd, env: { NO_COLOR: "1", HALTPOINT_STATE_DIR: stateDir } });
    assert.equal(r.exitCode, 2, r.all);
    assert.equal(r.all.trim().split("\n").length, 1, r.all);
    return r.all.trim();
  };
  const cases: Array<[string, (m: Record<string, any>, dir: string) => void, RegExp]> = [
    ["crafted-pidfile", (m) => (m.machines[0].argv = ["-m", "256", "-pidfile", pidfile]), /: machines\[0\]\.argv: not a field of a version 3 bundle \(revive takes no QEMU options from a bundle\)$/],
    ["crafted-guestfwd", (m) => (m.machines[0].options = { qemuArgs: ["-netdev", `user,id=x,guestfwd=tcp:10.0.2.100:1-cmd:touch ${marker}`] }), /: machines\[0\]\.options: not a field of a version 3 bundle/],
    ["crafted-dotdot", (m) => (m.machines[0].state.path = "../saved-again/server/state.zst"), /: machines\[0\]\.state: not a path inside the bundle: "\.\.\/saved-again\/server\/state\.zst"$/],
    [
      "crafted-symlink",
      (m, dir) => {
        rmSync(join(dir, m.machines[0].kernel.path));
        symlinkSync("/etc/passwd", join(dir, m.machines[0].kernel.path));
      },
      /: machine server's kernel \(boot\/\w+\.kernel\) is a symbolic link: a bundle's files must be its own$/,
    ],
    [
      "crafted-larger",
      (m, dir) => writeFileSync(join(dir, m.machines[0].state.path), Buffer.alloc(4096), { flag: "a" }),
      /: it is damaged: machine server's saved state \(server\/state\.zst\) is (\d+) bytes, \d+ were saved$/,
    ],
    ["crafted-v1", (m) => (m.version = 1), /: bundle format version 1, this haltpoint reads version 3 only: save it again with this haltpoint$/],
    ["crafted-resigned", (m) => (m.test.name = "looks-harmless"), /: its signature does not match its bundle\.json \(changed after it was signed\): give the signer's public key with --trust-key FILE, or revive it anyway with --allow-unsigned$/],
    ["crafted-unsigned", (_m, dir) => rmSync(join(dir, "bundle.sig")), /: it is not signed \(no bundle\.sig\): give the signer's public key/],
  ];
  for (const [name, edit, why] of cases) assert.match(await revive(craft(name, edit)), why, name);
  assert.ok(!existsSync(pidfile) && !existsSync(marker), "no file at the paths a crafted bundle names");
  assert.deepEqual(readdirSync(stateDir), [], "no state directory");
  assert.deepEqual(readdirSync(cwd), [], "no log directory");
  assert.deepEqual(await qemuProcesses(), []);
}

test("a CI-like run of a failing qemu test with --debug-hook ends by itself and leaves a private bundle", async () => {
  const r = await haltpoint(["run", "test/fixtures/bundle/ram-state.vmtest.ts", "--debug-hook", "--log-dir", join(base, "ci-logs")], { env: { CI: "true" }, timeout: 300_000 });
  assert.equal(r.exitCode, 1, r.all);
  const saved = /^!!! ram-state#1: saved as a bundle: (\S+) \((\d+\.\d) MiB in [\d.]+ s\)$/m.exec(r.all);
  assert.ok(saved, r.all);
  bundle = saved[1]!;
  assert.equal(bundle, join(base, "ci-logs", "breakpoints", "ram-state-1-bp" + /HALTED at breakpoint (\d+)/.exec(r.all)![1]));
  assert.match(r.all, new RegExp(`^!!! ram-state#1: revive: \\S*haltpoint\\.mjs revive ${bundle.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"));
  assert.match(r.all, /breakpoint \d+ released \(saved as a bundle \(--save-breakpoints\)\)/);
  const manifest = JSON.parse(readFileSync(join(bundle, "bundle.json"), "utf8"));
  assert.equal(manifest.error.message, "machine server: command `test -e /etc/the-config-the-test-expected` failed (exit code 1)");
  assert.match(manifest.error.stack, /ram-state\.vmtest\.ts/);
  assert.deepEqual(manifest.machines.map((m: { name: string }) => m.name), ["server", "client"]);
  for (const m of manifest.machines) assert.ok(!m.state.path.startsWith("/"), "paths inside a bundle are relative");
  for (const f of modesUnder(bundle)) assert.equal(f.mode, f.isDir ? 0o700 : 0o600, `${f.path} is the owner's only`);
  assert.deepEqual(await qemuProcesses(), []);
});

test("revived from a copy with an empty cache: frozen as it was, the original error, console, ssh and haltpoint save; released, nothing is left", async () => {
  assert.ok(bundle, "the first test made a bundle");
  const copy = join(base, "copied-bundle");
  cpSync(bundle, copy, { recursive: true });
  const child = haltpoint(["revive", copy, "--log-dir", join(base, "revive-logs")], { env: { XDG_CACHE_HOME: emptyCache }, timeout: 240_000 });
  const killer = setTimeout(() => child.kill("SIGKILL"), 230_000);
  try {
    const out = watchOutput(child, 120_000);
    const id = (await out.waitFor(/^!!! ram-state#1: HALTED at breakpoint (\d+): machine server: command `test -e \/etc\/the-config-the-test-expected` failed \(exit code 1\)$/m))[1]!;
    await out.waitFor(/^!!! ram-state#1: release:/m);
    assert.match(out.text(), /server: starting qemu \([^)]*revived from /);
    // Where it came from, printed before any QEMU started.
    const origin = out.text().search(/^haltpoint revive: bundle of ram-state#1 \(\S+ram-state\.vmtest\.ts\), saved \S+ on \S+ by \S+, haltpoint \S+, QEMU emulator version /m);
    assert.ok(origin >= 0 && origin < out.text().indexOf("starting qemu"), out.text());
    // Each revived QEMU runs under QEMU's seccomp sandbox and, revived by root, not as root.
    const pids = await qemuProcesses();
    assert.equal(pids.length, 2, "the two revived guests");
    for (const pid of pids) {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      assert.match(status, /^Seccomp:\t2$/m, `qemu ${pid} runs in seccomp filter mode`);
      const uid = Number(/^Uid:\t(\d+)/m.exec(status)![1]);
      if (process.getuid?.() === 0) assert.equal(uid, 65534, `qemu ${pid} dropped root`);
      else assert.equal(uid, process.getuid?.());
    }
    assert.match(out.text(), /^!!! ram-state#1: machines: server \(frozen\), client \(frozen\)$/m);
    const stateRoot = /!!! ram-state#1: sockets: (\/\S+?)\/\d+\/ssh/.exec(out.text())![1]!;

    const session = await consoleSession(id, [
      "error.message",
      "error.stack.includes('ram-state.vmtest.ts')",
      "await thaw()",
      `await server.succeed("cat /tmp/in-ram; ps -o args | grep -c '^sleep 100000'")`,
      `await client.succeed("ping -c 1 -W 10 server >/dev/null && echo reached")`,
      "await freeze()",
    ]);
    assert.match(session, /'machine server: command `test -e \/etc\/the-config-the-test-expected` failed \(exit code 1\)'/);
    assert.match(session, /> true/);
    assert.match(session, /'before-the-failure\\n1\\n'/, "the tmpfs file and the process started before the failure are there");
    assert.match(session, /'reached\\n'/);

    // The revived breakpoint's SSH socket reaches the guest (connecting thaws it).
    const ssh = await haltpoint(["ssh", id, "server", "--", "-o", "BatchMode=yes", "cat /tmp/in-ram; hostname"], { timeout: 60_000 });
    assert.equal(ssh.exitCode, 0, ssh.all);
    assert.match(ssh.stdout, /^before-the-failure\nserver$/m);

    // A live breakpoint (this one) saved again: it stays halted.
    const again = join(base, "saved-again");
    const save = await haltpoint(["save", id, "--out", again], { timeout: 120_000 });
    assert.equal(save.exitCode, 0, save.all);
    assert.match(save.stdout, new RegExp(`^saved breakpoint ${id} \\(ram-state#1\\) to ${again}: [\\d.]+ MiB in [\\d.]+ s; it is still halted$`, "m"));
    assert.match(save.stdout, /^revive it: \S+ revive \S+saved-again$/m);
    assert.ok(existsSync(join(again, "bundle.json")));
    assert.match((await haltpoint(["ls"])).stdout, new RegExp(`^${id}\\s+ram-state#1`, "m"));

    assert.equal((await haltpoint(["release", id])).exitCode, 0);
    const r = await child;
    assert.equal(r.exitCode, 0, r.all);
    assert.deepEqual(readdirSync(emptyCache), [], "no image was built, nothing was cached");
    assert.ok(!existsSync(stateRoot), `${stateRoot} was removed`);
    assert.deepEqual(await qemuProcesses(), []);
  } finally {
    clearTimeout(killer);
    child.kill("SIGKILL");
  }
});

test("a damaged bundle, one from another QEMU, and a directory that is no bundle are refused in one line", async () => {
  const again = join(base, "saved-again");
  assert.ok(existsSync(again), "the previous test saved a bundle");
  const refuse = async (dir: string): Promise<string> => {
    const r = await execa("node", [BIN, "revive", dir], { reject: false, all: true, env: { NO_COLOR: "1" } });
    assert.equal(r.exitCode, 2, r.all);
    assert.equal(r.all.trim().split("\n").length, 1, r.all);
    return r.all.trim();
  };
  await craftedBundles(again);
  const other = join(base, "other-qemu");
  cpSync(again, other, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(other, "bundle.json"), "utf8"));
  manifest.qemu = "QEMU emulator version 99.0.0";
  writeFileSync(join(other, "bundle.json"), JSON.stringify(manifest));
  signBundle(other); // as if another host of this user had signed it
  assert.match(await refuse(other), /^haltpoint revive: cannot revive \S+other-qemu: it was saved by QEMU emulator version 99\.0\.0 and this host has QEMU emulator version [\d.]+.*: QEMU loads only its own version's state$/);

  const state = join(again, "server", "state.zst");
  const bytes = readFileSync(state);
  bytes.fill(0x55, bytes.length >> 1, (bytes.length >> 1) + 64);
  writeFileSync(state, bytes);
  assert.equal(await refuse(again), `haltpoint revive: cannot revive ${again}: it is damaged: machine server's saved state (server/state.zst): its bytes differ from the saved ones (sha256)`);
  writeFileSync(state, bytes.subarray(0, 1000));
  assert.match(await refuse(again), /it is damaged: machine server's saved state \(server\/state\.zst\) is 1000 bytes, \d+ were saved$/);
  assert.equal(await refuse(base), `haltpoint revive: cannot revive ${base}: not a bundle (no bundle.json in it)`);
  assert.deepEqual(await qemuProcesses(), []);
});
