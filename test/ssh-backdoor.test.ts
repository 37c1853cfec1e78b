// The SSH backdoor on a real QEMU guest (dropbear behind a user-network forward), and
// end to end through the CLI: the printed lines pasted into a shell, `haltpoint ssh`,
// `--ssh-thaws=false`, `--no-ssh-backdoor`. Real OpenSSH client throughout.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { execa } from "execa";
import { QemuMachine } from "../vm/qemu/qemu-machine.ts";
import { SshBackdoor } from "../hooks/ssh/ssh-backdoor.ts";
import { connectVsockMux, type VsockMuxError } from "../hooks/ssh/vsock-mux.ts";
import { findOnPath } from "../vm/find-on-path.ts";
import { newForwardPort, parseUsernet } from "../vm/qemu/usernet.ts";
import { vhostVsockArgs, wantsVhostVsock } from "../vm/qemu/vhost-vsock.ts";
import { testMachineContext } from "./helpers/machine-context.ts";
import { qemuProcesses, qemuRuntime } from "./helpers/qemu.ts";
import { BIN, ROOT, haltpoint, watchOutput } from "./helpers/cli.ts";
import { haltpointCommand } from "../hooks/ssh/ssh-lines.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const baseOpts = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"];
const via = (socket: string, how: "proxy" | "nc" = "proxy") => ["-o", `ProxyCommand=${how === "proxy" ? `${BIN} proxy ${socket}` : `nc -U ${socket}`}`, ...baseOpts];

async function ssh(socket: string, args: string[], o: { input?: string | Buffer; how?: "proxy" | "nc"; buffer?: boolean } = {}) {
  const r = await execa("ssh", [...via(socket, o.how), "root@guest", ...args], {
    reject: false,
    timeout: 60_000,
    encoding: o.buffer ? "buffer" : "utf8",
    ...(o.input !== undefined ? { input: o.input } : { stdin: "ignore" as const }),
  });
  return { exitCode: r.exitCode, stdout: r.stdout as string | Uint8Array, stderr: String(r.stderr) };
}

/** What a raw client gets back (until close or `ms`). */
function rawExchange(path: string, send: string, ms = 3000): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(path);
    let data = "";
    const timer = setTimeout(() => (s.destroy(), resolve({ data, closed: false })), ms);
    s.on("connect", () => s.write(send));
    s.on("data", (c) => (data += c));
    s.on("error", () => {});
    s.on("close", () => (clearTimeout(timer), resolve({ data, closed: true })));
  });
}

describe("qemu helpers", () => {
  test("info usernet is parsed; a new forward's ephemeral port is found", () => {
    const before = parseUsernet(USERNET_BEFORE);
    assert.deepEqual(before[0], { proto: "TCP", state: "HOST_FORWARD", fd: 80, srcAddr: "127.0.0.1", srcPort: 39707, dstAddr: "10.0.2.15", dstPort: 22 });
    const after = parseUsernet(USERNET_BEFORE + "  TCP[HOST_FORWARD]  81       127.0.0.1 34637       10.0.2.15  9999     0     0\n");
    assert.equal(newForwardPort(before, after, 9999), 34637);
    assert.equal(newForwardPort(before, after, 22), undefined, "the forward to 22 was there before");
    assert.equal(parseUsernet(USERNET_BEFORE).find((r) => r.fd === 82)?.state, "SYN_SENT");
  });

  test("vhost-device-vsock: used where installed, for guests that bring their own kernel or disk; its QEMU arguments", () => {
    const bin = tempDir("hp-bin-", "/tmp");
    try {
      writeFileSync(join(bin, "vhost-device-vsock"), "#!/bin/sh\n", { mode: 0o755 });
      const on = { PATH: `${bin}:/usr/bin` };
      assert.equal(wantsVhostVsock({}, on), false, "haltpoint's own image listens on TCP only");
      assert.equal(wantsVhostVsock({ diskImage: "/x.qcow2" }, on), true);
      assert.equal(wantsVhostVsock({ kernel: "/k" }, on), true);
      assert.equal(wantsVhostVsock({ startScript: "/run-vm" }, on), false);
      assert.equal(wantsVhostVsock({}, { ...on, HALTPOINT_SSH_VSOCK: "on" }), true);
      assert.equal(wantsVhostVsock({ diskImage: "/x.qcow2" }, { ...on, HALTPOINT_SSH_VSOCK: "off" }), false);
      assert.equal(wantsVhostVsock({ diskImage: "/x.qcow2" }, { PATH: "/usr/bin" }), false, "not installed");
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
    assert.deepEqual(vhostVsockArgs("/s/v,x.sock", 256), [
      "-object", "memory-backend-memfd,id=hpmem,size=256M,share=on",
      "-machine", "memory-backend=hpmem",
      "-chardev", "socket,id=hpvsock,path=/s/v,,x.sock",
      "-device", "vhost-user-vsock-pci,chardev=hpvsock",
    ]);
  });
});

const USERNET_BEFORE = `Hub -1 (net0):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[HOST_FORWARD]  80       127.0.0.1 39707       10.0.2.15    22     0     0
  TCP[SYN_SENT]      82       127.0.0.1 39707       10.0.2.15    22     0     0
`;

describe("a qemu guest's ssh backdoor (user-network forward to dropbear)", () => {
  const env = testMachineContext();
  const logs: string[] = [];
  let m: QemuMachine;
  let backdoor: SshBackdoor;
  let sock: string;

  before(async () => {
    m = new QemuMachine("guest", { memory: 256 }, env.ctx, await qemuRuntime(), undefined);
    backdoor = await SshBackdoor.open([m], { dir: env.root, thaws: true, log: (mm, msg) => logs.push(`${mm}: ${msg}`) });
    env.ctx.started = (name) => backdoor.announce(name);
    await m.start();
    sock = backdoor.socketPath("guest")!;
  });
  after(async () => {
    await backdoor?.close();
    await m?.cleanup();
    env.cleanup();
  });

  test("a command's output, stderr and exit status, through `haltpoint proxy` and through a raw nc -U", async () => {
    const r = await ssh(sock, ["uname -n; echo err >&2; exit 4"]);
    assert.equal(r.exitCode, 4, r.stderr);
    assert.equal(r.stdout, "guest");
    assert.equal(r.stderr, "err");
    const raw = await ssh(sock, ["cat /tmp/mark 2>/dev/null || echo fresh; id -u"], { how: "nc" });
    assert.equal(raw.exitCode, 0, raw.stderr);
    assert.equal(raw.stdout, "fresh\n0");
  });

  test("the forward is on loopback only, made once", async () => {
    const fwds = (await m.sendMonitorCommand("info usernet")).split("\n").filter((l) => /HOST_FORWARD/.test(l));
    assert.equal(fwds.length, 1, fwds.join("\n"));
    assert.match(fwds[0]!, /TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+\d+\s+10\.0\.2\.15\s+22\b/);
  });

  test("a file copied in and out through the socket comes back byte for byte (the guest has no scp: cat over ssh)", async () => {
    const blob = randomBytes(512 * 1024);
    const put = await ssh(sock, ["cat > /tmp/blob"], { input: blob });
    assert.equal(put.exitCode, 0, put.stderr);
    const sum = await ssh(sock, ["sha256sum /tmp/blob"]);
    assert.equal(String(sum.stdout).split(" ")[0], createHash("sha256").update(blob).digest("hex"));
    const back = await ssh(sock, ["cat /tmp/blob"], { buffer: true });
    assert.ok(Buffer.from(back.stdout as Uint8Array).equals(blob));
  });

  test("16 ssh sessions at once all succeed (more than dropbear lets wait unauthenticated from one address)", async () => {
    const rs = await Promise.all(Array.from({ length: 16 }, (_, i) => ssh(sock, [`echo session ${i}`], { how: i % 2 ? "nc" : "proxy" })));
    rs.forEach((r, i) => {
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, `session ${i}`);
    });
  });

  test("CONNECT to a closed guest port fails cleanly (no OK, nothing written) and the socket keeps serving", async () => {
    assert.deepEqual(await rawExchange(sock, "CONNECT 9999\n"), { data: "", closed: true });
    await assert.rejects(connectVsockMux(sock, 9999), (e: VsockMuxError) => e.code === "ECONNREFUSED");
    assert.ok(logs.some((l) => /guest: ssh backdoor: port 9999: .*guest port 9999 is not open/.test(l)), logs.join("\n"));
    assert.equal((await ssh(sock, ["echo still serving"])).stdout, "still serving");
  });

  test("CONNECT to another open guest port gets OK once the guest accepted, then its bytes", async () => {
    await m.succeed("mkdir -p /srv && echo served > /srv/x && httpd -p 8080 -h /srv");
    const s = await connectVsockMux(sock, 8080);
    const body = await new Promise<string>((resolve) => {
      let d = "";
      s.on("data", (c) => (d += c)).on("end", () => resolve(d)).resume();
      s.end("GET /x HTTP/1.0\r\n\r\n");
    });
    s.destroy();
    assert.match(body, /^HTTP\/1\.[01] 200 OK/);
    assert.match(body, /\r\n\r\nserved\n$/);
  });

  test("QEMU's forwards are in a network namespace of its own: none listens on the host, uid 65534 cannot reach the guest", async () => {
    const pid = m.pid!;
    const { readlinkSync } = await import("node:fs");
    assert.notEqual(readlinkSync(`/proc/${pid}/ns/net`), readlinkSync("/proc/self/ns/net"));
    const port = Number(/HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+10\.0\.2\.15\s+22\b/.exec(await m.sendMonitorCommand("info usernet"))![1]);
    // Every TCP listener on the host, with its processes: none is QEMU's or its relay's.
    const listeners = (await execa("ss", ["-ltnpH"])).stdout;
    assert.doesNotMatch(listeners, new RegExp(`pid=${pid},`));
    const asNobody = await execa("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "ssh", "-p", String(port), ...baseOpts, "-o", "ConnectTimeout=5", "root@127.0.0.1", "id"], { reject: false, stdin: "ignore" });
    assert.notEqual(asNobody.exitCode, 0);
    assert.doesNotMatch(asNobody.stdout, /uid=/);
    // The relay's socket: the owner's only.
    const { statSync } = await import("node:fs");
    assert.equal(statSync(join(m.dir, "relay.sock")).mode & 0o777, 0o600);
  });

  test("forwardPort still reaches the guest from the host's loopback (the test's own wish), in and out of its namespace", async () => {
    const { createServer } = await import("node:net");
    const probe = createServer();
    const hostPort = await new Promise<number>((r) => probe.listen(0, "127.0.0.1", () => r((probe.address() as { port: number }).port)));
    await new Promise((r) => probe.close(r));
    await m.succeed("mkdir -p /srv2 && echo forwarded > /srv2/y && httpd -p 8081 -h /srv2");
    await m.forwardPort(hostPort, 8081);
    const body = await new Promise<string>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port: hostPort, allowHalfOpen: true });
      let d = "";
      s.on("data", (c) => (d += c)).on("end", () => (s.destroy(), resolve(d))).on("error", reject);
      s.end("GET /y HTTP/1.0\r\n\r\n");
    });
    assert.match(body, /\r\n\r\nforwarded\n$/);
  });

  test("connecting to a frozen guest thaws it first, and says so", async () => {
    await m.freeze();
    assert.match(await m.sendMonitorCommand("info status"), /paused/);
    const r = await ssh(sock, ["echo awake"]);
    assert.equal(r.stdout, "awake");
    assert.equal(m.state, "running");
    assert.ok(logs.some((l) => /^guest: an SSH connection \(port 22\) thaws the machine/.test(l)), logs.join("\n"));
  });
});



/** Run a printed line in a shell, as a person pasting it would, with more ssh arguments after it. */
const paste = (line: string, more: string) => execa("bash", ["-c", `${line} -o BatchMode=yes -o LogLevel=ERROR ${more}`], { reject: false, timeout: 60_000, stdin: "ignore" });

describe("through the CLI", () => {
  test("a halted run's printed lines work when pasted (qemu and local machines), and so does haltpoint ssh", async (t) => {
    const child = haltpoint(["run", "test/fixtures/ssh/halt.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--debug-port", "47400"], { env: { HP_SSH_GUEST: "qemu" }, timeout: 240_000 });
    try {
      const out = watchOutput(child, 120_000);
      const id = (await out.waitFor(/!!! sshhalt#1: HALTED at breakpoint (\d+)/))[1]!;
      await out.waitFor(/!!! sshhalt#1: release:/);
      const text = out.text();

      // Printed when each machine started: both ways in, for both machines.
      const printed = (machine: string, re: RegExp) => {
        const m = new RegExp(`^sshhalt#1 ${machine}: ssh backdoor: (${re.source})$`, "m").exec(text);
        assert.ok(m, `a ${re} line for ${machine} in:\n${text}`);
        return m[1]!;
      };
      const guestProxy = printed("guest", /ssh -o ProxyCommand=.* root@guest/);
      const boxProxy = printed("box", /ssh -o ProxyCommand=.* root@box/);
      const guestMux = printed("guest", /ssh -o User=root vsock-mux\/\/\S+\/guest_host\.socket/);
      // …and repeated in the breakpoint's !!! lines.
      assert.match(text, new RegExp(`^!!! sshhalt#1: ssh guest: ${haltpointCommand()} ssh ${id} guest$`, "m"));
      assert.ok(text.includes(`!!! sshhalt#1: ssh box: ${boxProxy}`), text);
      assert.ok(text.includes(`!!! sshhalt#1: ssh guest: ${guestMux}`), text);

      // Pasted: the frozen machines thaw for the connection and answer.
      const g = await paste(guestProxy, "'cat /tmp/token; exit 6'");
      assert.equal(g.exitCode, 6, g.stderr);
      assert.equal(g.stdout, "guest-token");
      const b = await paste(boxProxy, "cat /tmp/token");
      assert.equal(b.stdout, "box-token", b.stderr);
      await out.waitFor(/sshhalt#1 guest: an SSH connection \(port 22\) thaws the machine/);
      await out.waitFor(/sshhalt#1 box: an SSH connection \(port 22\) thaws the machine/);

      // `ssh -o User=root vsock-mux/<path>` through systemd-ssh-proxy's protocol (a stand-in
      // for systemd < 257 hosts: same handshake, same fd passing to ssh).
      const python = findOnPath("python3");
      if (python) {
        const cfg = join(ROOT, "test/fixtures/ssh/.ssh_config.tmp");
        writeFileSync(
          cfg,
          `Host vsock-mux/*\n  ProxyCommand ${python} ${join(ROOT, "test/fixtures/ssh/fake-systemd-ssh-proxy.py")} %h %p\n  ProxyUseFdpass yes\n  CheckHostIP no\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n`,
        );
        try {
          const v = await paste(guestMux.replace(/^ssh /, `ssh -F ${cfg} `), "cat /tmp/token");
          assert.equal(v.stdout, "guest-token", v.stderr);
        } finally {
          rmSync(cfg, { force: true });
        }
      } else t.diagnostic("no python3: the vsock-mux line was not tried (it needs a systemd-ssh-proxy stand-in)");

      // haltpoint ssh ID MACHINE [-- command]: exit status passed on.
      const hs = await haltpoint(["ssh", id, "box", "--", "cat /tmp/token; exit 4"]);
      assert.equal(hs.exitCode, 4);
      assert.equal(hs.stdout, "box-token");
      const hg = await haltpoint(["ssh", id, "guest", "--", "hostname"]);
      assert.equal(hg.exitCode, 0, hg.stderr);
      assert.equal(hg.stdout, "guest");
      const nope = await haltpoint(["ssh", id, "nosuch"]);
      assert.equal(nope.exitCode, 1);
      assert.match(nope.stderr, /has no machine 'nosuch' with an ssh socket \(it has: box, guest\)/);

      const socketDir = /!!! sshhalt#1: sockets: (\S+)/.exec(text)![1]!;
      assert.equal(socketDir, socketDir.toLowerCase());
      assert.equal((await haltpoint(["release", id])).exitCode, 0);
      const r = await child;
      assert.equal(r.exitCode, 1);
      assert.equal(existsSync(socketDir), false, "the sockets are gone with the run");
    } finally {
      child.kill("SIGKILL");
    }
    assert.deepEqual(await qemuProcesses(), [], "no qemu left behind");
  });

  test("--ssh-thaws false refuses a frozen machine with a message; --no-ssh-backdoor makes no sockets", async () => {
    const child = haltpoint(["run", "test/fixtures/ssh/halt.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--ssh-thaws", "false", "--debug-port", "47420"], { timeout: 120_000 });
    try {
      const out = watchOutput(child, 120_000);
      const id = (await out.waitFor(/!!! sshhalt#1: HALTED at breakpoint (\d+)/))[1]!;
      await out.waitFor(/!!! sshhalt#1: release:/);
      const r = await haltpoint(["ssh", id, "box", "--", "true"]);
      assert.equal(r.exitCode, 255);
      assert.match(r.stderr, /port 22 is not open .*--ssh-thaws=false/);
      await out.waitFor(/sshhalt#1 box: ssh backdoor: refused a connection to port 22: the machine is frozen and --ssh-thaws is false/);
      assert.equal((await haltpoint(["release", id])).exitCode, 0);
      await child;
    } finally {
      child.kill("SIGKILL");
    }

    const off = haltpoint(["run", "test/fixtures/ssh/halt.vmtest.ts", "--debug-hook", "--no-save-breakpoints", "--no-ssh-backdoor", "--debug-port", "47440"], { timeout: 120_000 });
    try {
      const out = watchOutput(off, 120_000);
      const id = (await out.waitFor(/!!! sshhalt#1: HALTED at breakpoint (\d+)/))[1]!;
      await out.waitFor(/!!! sshhalt#1: release:/);
      assert.doesNotMatch(out.text(), /ssh backdoor:|!!! sshhalt#1: ssh /);
      const r = await haltpoint(["ssh", id, "box"]);
      assert.equal(r.exitCode, 1);
      assert.match(r.stderr, /has no ssh sockets/);
      assert.equal((await haltpoint(["release", id])).exitCode, 0);
      await off;
    } finally {
      off.kill("SIGKILL");
    }
  });

  test("sockets come with --ssh-backdoor or a test's sshBackdoor: true, and not otherwise without the debug hook", async () => {
    const plain = await haltpoint(["run", "test/fixtures/ssh/declared.vmtest.ts", "test/fixtures/ssh/halt.vmtest.ts", "--jobs", "1"]);
    assert.equal(plain.exitCode, 1, plain.all);
    assert.match(plain.all, /^declared#1 box: ssh backdoor: ssh -o User=root vsock-mux\/\/\S+\/box_host\.socket$/m);
    assert.doesNotMatch(plain.all, /^sshhalt#1 \w+: ssh backdoor:/m);
    const flag = await haltpoint(["run", "test/fixtures/ssh/halt.vmtest.ts", "--ssh-backdoor"]);
    assert.equal(flag.exitCode, 1, flag.all);
    assert.match(flag.all, /^sshhalt#1 box: ssh backdoor: ssh -o ProxyCommand=.* root@box$/m);
    assert.match(flag.all, /^sshhalt#1 guest: ssh backdoor: /m);
  });

  test("`haltpoint run --help` documents the flags; `haltpoint proxy` needs a socket", async () => {
    const help = await haltpoint(["run", "--help"]);
    assert.match(help.stdout, /--ssh-backdoor/);
    assert.match(help.stdout, /--no-ssh-backdoor/);
    assert.match(help.stdout, /--ssh-thaws <bool>/);
    const bad = await haltpoint(["run", "--ssh-thaws", "maybe", "test/fixtures/ssh"]);
    assert.equal(bad.exitCode, 2);
    assert.match(bad.all, /--ssh-thaws takes true or false, got 'maybe'/);
    const p = await haltpoint(["proxy", "/nonexistent/x_host.socket"], { input: "" });
    assert.equal(p.exitCode, 1);
    assert.match(p.stderr, /haltpoint proxy: \/nonexistent\/x_host\.socket: no such socket/);
  });
});
