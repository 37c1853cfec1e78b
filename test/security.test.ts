// Only the user who runs haltpoint gets in (issue #10). A real run halted at a breakpoint with
// a qemu guest and a local machine (`--debug-hook --ssh-backdoor`), while the owner has an SSH
// session to the guest open: a real second user (uid 65534, through setpriv) tries every TCP
// port any process of the run listens on, with nc (the console must not evaluate what it
// sends: a marker file stays absent) and with ssh (no shell), and tries QEMU's forwards too.
// In the same run the owner's telnet, nc, `haltpoint attach` and both printed ssh lines work.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { findOnPath } from "../vm/find-on-path.ts";
import { Peer } from "./fixtures/hooks/peer.ts";
import { ROOT, haltpoint, watchOutput } from "./helpers/cli.ts";
import { processesMatching, TEST_MARK } from "./helpers/machine-context.ts";
import { qemuProcesses } from "./helpers/qemu.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
const SSH_OPTS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=10";

/** Every process started for this test file (they all carry its mark in their environment). */
async function runProcesses(): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, "utf8").includes(`HALTPOINT_TEST_MARK=${TEST_MARK}\0`)) out.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** TCP ports listened on in this network namespace by any of `pids` (from `ss -ltnp`). */
async function tcpListenersOf(pids: number[]): Promise<number[]> {
  const lines = (await execa("ss", ["-ltnpH"])).stdout.split("\n");
  const ports = new Set<number>();
  for (const l of lines) {
    if (!pids.some((p) => l.includes(`pid=${p},`))) continue;
    const local = l.trim().split(/\s+/)[3]!;
    ports.add(Number(local.slice(local.lastIndexOf(":") + 1)));
  }
  return [...ports].sort((a, b) => a - b);
}

/** Ports in LISTEN state in the network namespace of process `pid` (its /proc/PID/net/tcp). */
function listenersInNamespaceOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/net/tcp`, "utf8")
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[3] === "0A")
    .map((f) => parseInt(f[1]!.split(":")[1]!, 16));
}

const paste = (line: string, more: string) => execa("bash", ["-c", `${line} ${SSH_OPTS} ${more}`], { reject: false, timeout: 60_000, stdin: "ignore" });

test("a halted run lets only its owner in: console and SSH refused to uid 65534 on every port, the owner's ways in all work", async (t) => {
  const work = tempDir("hp-security-");
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const child = haltpoint(["run", "test/fixtures/ssh/halt.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--ssh-backdoor", "--debug-port", "47600", "--log-dir", join(work, "logs")], {
    env: { HP_SSH_GUEST: "qemu" },
    timeout: 300_000,
  });
  const peers: Peer[] = [];
  t.after(async () => {
    for (const p of peers) await p.kill();
  });
  try {
    const out = watchOutput(child, 180_000);
    const id = (await out.waitFor(/!!! sshhalt#1: HALTED at breakpoint (\d+)/))[1]!;
    await out.waitFor(/!!! sshhalt#1: release:/);
    const text = out.text();
    const line = (re: RegExp): string => {
      const m = re.exec(text);
      assert.ok(m, `${re} in:\n${text}`);
      return m[1]!;
    };
    const guestProxy = line(/^sshhalt#1 guest: ssh backdoor: (ssh -o ProxyCommand=.* root@guest)$/m);
    const guestMux = line(/^sshhalt#1 guest: ssh backdoor: (ssh -o User=root vsock-mux\/\/\S+\/guest_host\.socket)$/m);

    // What the run wrote and listens on in the file system: private to its user.
    const mode = (p: string): string => (statSync(p).mode & 0o777).toString(8);
    const socketDir = line(/^!!! sshhalt#1: sockets: (\S+)$/m);
    assert.equal(mode(socketDir), "700");
    for (const f of readdirSync(socketDir)) assert.equal(mode(join(socketDir, f)), "600", f);
    const stateRoot = /^\/var\/tmp\/hp-[0-9a-f]+/.exec(socketDir)?.[0];
    if (stateRoot) assert.equal(mode(stateRoot), "700");
    assert.equal(mode(join(work, "logs")), "700");
    const controlDir = process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, "haltpoint") : `/tmp/haltpoint-${process.getuid!()}`;
    assert.equal(mode(controlDir), "700");

    // The owner's SSH session to the guest, open for the whole of what follows.
    const session = new Peer("bash", ["-c", `${guestProxy} ${SSH_OPTS} 'echo session open; cat'`]);
    peers.push(session);
    await session.expect("session open", 60_000);

    // Every TCP port any process of the run listens on (on this host's network).
    const pids = await runProcesses();
    const ports = await tcpListenersOf(pids);
    assert.ok(ports.includes(Number(id)), `the console port ${id} among the run's listeners ${ports.join(", ")}`);
    // QEMU's forwards (one to the guest's sshd, made by the session) are in its own network namespace.
    const [qemuPid] = await qemuProcesses();
    assert.ok(qemuPid, "a qemu process");
    assert.notEqual(readlinkSync(`/proc/${qemuPid}/ns/net`), readlinkSync("/proc/self/ns/net"));
    const forwards = listenersInNamespaceOf(qemuPid);
    assert.ok(forwards.length >= 1, "the session made a forward inside QEMU's namespace");
    const guestDir = join(dirname(socketDir), "guest");
    assert.equal(mode(guestDir), "700");
    assert.equal(mode(join(guestDir, "relay.sock")), "600");

    t.diagnostic(`tried as uid 65534: the run's listeners ${ports.join(", ")}; QEMU's forwards ${forwards.join(", ")}`);
    const marker = join(work, "evaluated-for-uid-65534");
    const code = `require("fs").writeFileSync(${JSON.stringify(marker)}, "x")\n`;
    for (const port of [...new Set([...ports, ...forwards])]) {
      const nc = await execa(AS_NOBODY[0]!, [...AS_NOBODY.slice(1), "nc", "-w", "5", "-N", "127.0.0.1", String(port)], { input: code, reject: false, timeout: 30_000 });
      if (port === Number(id)) assert.match(nc.stdout, /^haltpoint: refused: uid 65534 may not use this console/, `port ${port}: ${nc.stdout}`);
      const sshTry = await execa(AS_NOBODY[0]!, [...AS_NOBODY.slice(1), "ssh", ...SSH_OPTS.split(" "), "-p", String(port), "root@127.0.0.1", "id"], { reject: false, timeout: 30_000, stdin: "ignore" });
      assert.notEqual(sshTry.exitCode, 0, `port ${port}: ssh as uid 65534 got in: ${sshTry.stdout}`);
      assert.doesNotMatch(sshTry.stdout, /uid=/, `port ${port}`);
    }
    assert.equal(existsSync(marker), false, "nothing uid 65534 sent was evaluated");
    await out.waitFor(/!!! sshhalt#1: refused a console connection from 127\.0\.0\.1:\d+: uid 65534 may not use this console/);

    // The owner: telnet, nc, haltpoint attach, and both printed ssh lines, all while the session is open.
    const owned = join(work, "evaluated-for-the-owner");
    const tel = new Peer("telnet", ["127.0.0.1", id]);
    peers.push(tel);
    await tel.expect(`haltpoint breakpoint ${id}: sshhalt#1 failed`, 30_000);
    tel.send("6*7\n");
    await tel.expect("42");
    const nc = new Peer("nc", ["127.0.0.1", id]);
    peers.push(nc);
    await nc.expect("sshhalt#1> ", 30_000);
    nc.send(`require("fs").writeFileSync(${JSON.stringify(owned)}, "x"); "written"\n`);
    await nc.expect("'written'");
    assert.ok(existsSync(owned), "the owner's code ran");
    const attach = await haltpoint(["attach", id], { input: "box.name\n" });
    assert.equal(attach.exitCode, 0, attach.all);
    assert.match(attach.stdout, /'box'/);

    const viaProxy = await paste(guestProxy, "'cat /tmp/token'");
    assert.equal(viaProxy.stdout, "guest-token", viaProxy.stderr);
    const python = findOnPath("python3");
    if (python) {
      const cfg = join(work, "ssh_config");
      writeFileSync(
        cfg,
        `Host vsock-mux/*\n  ProxyCommand ${python} ${join(ROOT, "test/fixtures/ssh/fake-systemd-ssh-proxy.py")} %h %p\n  ProxyUseFdpass yes\n  CheckHostIP no\n`,
      );
      const viaMux = await paste(guestMux.replace(/^ssh /, `ssh -F ${cfg} `), "'cat /tmp/token'");
      assert.equal(viaMux.stdout, "guest-token", viaMux.stderr);
    } else t.diagnostic("no python3: the vsock-mux line was not tried (it needs a systemd-ssh-proxy stand-in)");
    session.send("still here\n");
    await session.expect("still here");

    assert.equal((await haltpoint(["release", id])).exitCode, 0);
    const r = await child;
    assert.equal(r.exitCode, 1);
  } finally {
    child.kill("SIGKILL");
  }
  assert.deepEqual(await qemuProcesses(), [], "no qemu left behind");
  assert.deepEqual(await processesMatching("netns-relay"), [], "no relay left behind");
});
