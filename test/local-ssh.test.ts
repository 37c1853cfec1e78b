// The SSH backdoor of local machines (hooks/ssh/local-ssh-server.ts behind a vsock-mux socket),
// driven with the real OpenSSH client through `haltpoint proxy` and `nc -U`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { execa } from "execa";
import { LocalMachine } from "../vm/local/local-machine.ts";
import { SshBackdoor } from "../hooks/ssh/ssh-backdoor.ts";
import { findSftpServer } from "../hooks/ssh/local-ssh-server.ts";
import { connectVsockMux, type VsockMuxError } from "../hooks/ssh/vsock-mux.ts";
import { isAlive, testMachineContext } from "./helpers/machine-context.ts";
import { tickerLoop as tickerLoopAt, tickerShells } from "./helpers/ticker.ts";
import { emptied, settled } from "./helpers/settled.ts";
import { BIN } from "./helpers/cli.ts";

const baseOpts = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"];
/** ssh options through `haltpoint proxy` (CONNECT 22), or through `nc -U` (a raw client: no handshake). */
const via = (socket: string, how: "proxy" | "nc" = "proxy") => ["-o", `ProxyCommand=${how === "proxy" ? `${BIN} proxy ${socket}` : `nc -U ${socket}`}`, ...baseOpts];

async function ssh(socket: string, args: string[], o: { input?: string | Buffer; how?: "proxy" | "nc"; tty?: boolean } = {}) {
  const r = await execa("ssh", [...via(socket, o.how), ...(o.tty ? ["-tt"] : []), "root@box", ...args], {
    reject: false,
    timeout: 30_000,
    ...(o.input !== undefined ? { input: o.input } : { stdin: "ignore" as const }),
  });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** A session left running (to be killed by the test). */
function sshRunning(socket: string, args: string[], o: { tty?: boolean } = {}) {
  return execa("ssh", [...via(socket), ...(o.tty ? ["-tt"] : []), "root@box", ...args], { reject: false, stdin: "ignore" });
}

const lines = (f: string) => (existsSync(f) ? readFileSync(f, "utf8").split("\n").length : 0);
/** A ticker writing to the machine's /tmp/<file>. */
const tickerLoop = (file: string) => tickerLoopAt(file, `/tmp/${file}`);

describe("a local machine's ssh backdoor", () => {
  const env = testMachineContext();
  const logs: string[] = [];
  let box: LocalMachine;
  let cold: LocalMachine;
  let backdoor: SshBackdoor;
  let noThaw: SshBackdoor;
  let sock: string;
  let coldSock: string;

  before(async () => {
    box = new LocalMachine("box", {}, env.ctx);
    cold = new LocalMachine("cold", {}, env.ctx);
    const log = (m: string, msg: string) => logs.push(`${m}: ${msg}`);
    backdoor = await SshBackdoor.open([box], { dir: join(env.root, "a"), thaws: true, log });
    noThaw = await SshBackdoor.open([cold], { dir: join(env.root, "b"), thaws: false, log });
    env.ctx.started = (m) => (m === "box" ? backdoor : noThaw).announce(m);
    await Promise.all([box.start(), cold.start()]);
    sock = backdoor.socketPath("box")!;
    coldSock = noThaw.socketPath("cold")!;
  });
  after(async () => {
    await backdoor?.close();
    await noThaw?.close();
    await box?.cleanup();
    await cold?.cleanup();
    // Nothing the sessions started outlives the machines (each is reaped as it ends).
    assert.deepEqual(await emptied(async () => [...env.processes.keys()].filter(isAlive)), [], "every process the sessions started is gone");
    env.cleanup();
  });

  test("the socket is <dir>/<machine>_host.socket, 0600 in a 0700 directory, and its lines are printed at start", () => {
    assert.match(sock, /\/ssh[-0-9a-f]*\/box_host\.socket$/);
    assert.equal(sock, sock.toLowerCase(), "lower case, for ssh vsock-mux/<path>");
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    assert.equal(statSync(join(sock, "..")).mode & 0o777, 0o700);
    assert.ok(logs.includes(`box: ssh backdoor: ssh -o User=root vsock-mux/${sock}`), logs.join("\n"));
    assert.ok(logs.some((l) => l.startsWith("box: ssh backdoor: ssh -o ProxyCommand=") && l.endsWith("root@box")), logs.join("\n"));
  });

  test("exec: stdout, stderr and the exit status come back separately", async () => {
    const r = await ssh(sock, ["echo out; echo err >&2; exit 7"]);
    assert.equal(r.stdout, "out");
    assert.equal(r.stderr, "err");
    assert.equal(r.exitCode, 7);
  });

  test("a session runs inside the sandbox: its hostname, directory, environment and private /tmp", async () => {
    await box.succeed("echo from-the-test > token; echo private > /tmp/p");
    const r = await ssh(sock, ['hostname; pwd; echo "$HOME $HALTPOINT_MACHINE"; cat token /tmp/p; echo $$'], { how: "nc" });
    assert.equal(r.exitCode, 0, r.stderr);
    const [host, pwd, envLine, token, p, pid] = r.stdout.split("\n");
    assert.equal(host, "box");
    assert.equal(pwd, box.dir);
    assert.equal(envLine, `${box.dir} box`);
    assert.equal(token, "from-the-test");
    assert.equal(p, "private");
    assert.ok(Number(pid) < 100, `a small pid: it is in the sandbox's PID namespace (${pid})`);
    assert.equal(existsSync("/tmp/p") && readFileSync("/tmp/p", "utf8") === "private\n", false, "the host's /tmp is not the machine's");
  });

  test("pty sessions (ssh -tt): a terminal, its size, the exit status; an interactive shell reads its input", async () => {
    const r = await ssh(sock, ["tty; stty size; echo $TERM; exit 5"], { tty: true });
    assert.equal(r.exitCode, 5);
    assert.match(r.stdout, /^\/dev\/pts\/\d+\r\n\d+ \d+\r\n\S+\r?$/);
    const sh = await ssh(sock, [], { tty: true, input: "echo answer=$((6*7))\nexit 9\n" });
    assert.equal(sh.exitCode, 9);
    assert.match(sh.stdout, /answer=42/);
    assert.match(sh.stdout, /root@box:~# /, "a prompt with the machine's name");
  });

  test("files: scp -O both ways, and an exact 1 MiB copy through stdin", async () => {
    const blob = randomBytes(1 << 20);
    const put = await ssh(sock, ["cat > blob"], { input: blob });
    assert.equal(put.exitCode, 0);
    const sum = await ssh(sock, ["sha256sum blob | cut -d' ' -f1"]);
    assert.equal(sum.stdout, createHash("sha256").update(blob).digest("hex"));

    const src = join(env.root, "up.txt");
    writeFileSync(src, "uploaded with scp\n");
    const up = await execa("scp", ["-O", ...via(sock), src, "root@box:/tmp/up.txt"], { reject: false });
    assert.equal(up.exitCode, 0, up.stderr);
    assert.equal(await box.succeed("cat /tmp/up.txt"), "uploaded with scp\n");
    const down = await execa("scp", ["-O", ...via(sock), "root@box:/tmp/up.txt", join(env.root, "down.txt")], { reject: false });
    assert.equal(down.exitCode, 0, down.stderr);
    assert.equal(readFileSync(join(env.root, "down.txt"), "utf8"), "uploaded with scp\n");
  });

  test("sftp (scp's default): the host's sftp-server in the sandbox, or a message that says what to do", async () => {
    const src = join(env.root, "sftp.txt");
    writeFileSync(src, "via sftp\n");
    const r = await execa("scp", [...via(sock), src, "root@box:/tmp/sftp.txt"], { reject: false });
    if (findSftpServer()) {
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(await box.succeed("cat /tmp/sftp.txt"), "via sftp\n");
    } else {
      assert.notEqual(r.exitCode, 0);
      assert.match(r.stderr, /no sftp-server on this host \(install openssh-sftp-server\), use scp -O/);
    }
  });

  test("8 ssh sessions at once all succeed", async () => {
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => ssh(sock, [`sleep 0.3; echo session ${i}`], { how: i % 2 ? "nc" : "proxy" })));
    rs.forEach((r, i) => {
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, `session ${i}`);
    });
  });

  test("CONNECT to another port reaches it on 127.0.0.1; a closed port fails cleanly and the socket keeps serving", async () => {
    const srv = createServer((s) => s.end("hello from a host port\n"));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    const s = await connectVsockMux(sock, port);
    const got = await new Promise<string>((r) => {
      let d = "";
      s.on("data", (c) => (d += c)).on("end", () => r(d)).resume(); // connectVsockMux leaves it paused
    });
    s.destroy();
    srv.close();
    assert.equal(got, "hello from a host port\n");

    await assert.rejects(connectVsockMux(sock, port), (e: VsockMuxError) => e.code === "ECONNREFUSED");
    const cli = await execa("node", [BIN, "proxy", sock, String(port)], { reject: false, input: "" });
    assert.equal(cli.exitCode, 1);
    assert.match(cli.stderr, new RegExp(`port ${port} is not open`));
    assert.equal((await ssh(sock, ["echo still serving"])).stdout, "still serving");
  });

  test("freezing the machine freezes its ssh sessions too (exec, pty, and what they left running); thaw resumes them", async () => {
    const tmp = join(box.dir, "tmp"); // the machine's private /tmp, seen from the host
    const tickers = ["bg", "exec", "pty"];
    // Left running in the background by a session that has ended.
    assert.equal((await ssh(sock, [`(${tickerLoop("bg")}) </dev/null >/dev/null 2>&1 & echo started`])).stdout, "started");
    // A session still running, without and with a terminal.
    const exec = sshRunning(sock, [tickerLoop("exec")]);
    const pty = sshRunning(sock, [tickerLoop("pty")], { tty: true });
    const files = tickers.map((f) => join(tmp, f));
    const counts = () => files.map(lines);
    assert.ok((await settled(counts, (c) => c.every((n) => n >= 3), 30_000)).every((n) => n >= 3), "every ticker ticks");
    const shells = async () => (await Promise.all(tickers.map(tickerShells))).flat();

    await box.freeze();
    // Frozen is stopped: every ticker's shell is in state T. (SIGSTOP lands after a write in
    // progress, so once all are stopped no line can come until the thaw.)
    const stopped = await settled(shells, (s) => s.length >= 3 && s.every((p) => p.state === "T"));
    assert.ok(stopped.length >= 3 && stopped.every((p) => p.state === "T"), `every ticker's shell is stopped: ${JSON.stringify(stopped)}`);
    const frozen = counts();
    // Nothing ticks while frozen, over a window that is no synchronisation: `cold`, a machine
    // not frozen, runs the same ticker; 20 of its ticks (1 s at 50 ms each) are the window a
    // frozen ticker that still ran would show in.
    assert.equal((await ssh(coldSock, [`(${tickerLoop("clock")}) </dev/null >/dev/null 2>&1 & echo started`], { how: "nc" })).stdout, "started");
    const clock = join(cold.dir, "tmp", "clock");
    assert.ok((await settled(() => lines(clock), (n) => n >= 20, 30_000)) >= 20, "the reference ticker in `cold` ticked 20 times");
    assert.deepEqual(counts(), frozen, "nothing ticked while frozen");
    assert.ok((await shells()).every((p) => p.state === "T"), "still stopped");

    await box.thaw();
    const thawed = await settled(counts, (c) => c.every((n, i) => n > frozen[i]! + 3), 30_000);
    for (const [i, f] of files.entries()) assert.ok(thawed[i]! > frozen[i]! + 3, `${f} ticks again`);

    // The client going away hangs up its session: its shell ends (the one left in the background does not).
    exec.kill();
    pty.kill();
    await Promise.all([exec, pty]);
    assert.deepEqual(await emptied(async () => [...(await tickerShells("exec")), ...(await tickerShells("pty"))], 30_000), [], "the hung-up sessions' shells are gone");
    const gone = files.slice(1).map(lines);
    // And nothing of them writes on: checked over 10 ticks of the background ticker, still running.
    const bg = lines(files[0]!);
    assert.ok((await settled(() => lines(files[0]!), (n) => n >= bg + 10, 30_000)) >= bg + 10, "the background ticker still ticks");
    assert.deepEqual(files.slice(1).map(lines), gone, "the hung-up sessions stopped");
  });

  test("connecting to a frozen machine thaws it first, and says so", async () => {
    await box.freeze();
    const r = await ssh(sock, ["echo thawed and answering"]);
    assert.equal(r.stdout, "thawed and answering");
    assert.equal(box.state, "running");
    assert.ok(logs.some((l) => /^box: an SSH connection \(port 22\) thaws the machine/.test(l)), logs.join("\n"));
  });

  test("with thaws=false a frozen machine's socket refuses, with a message in the log, and the machine stays frozen", async () => {
    await cold.freeze();
    const r = await ssh(coldSock, ["echo no"], { how: "nc" });
    assert.equal(r.exitCode, 255);
    const cli = await execa("node", [BIN, "proxy", coldSock], { reject: false, input: "" });
    assert.equal(cli.exitCode, 1);
    assert.match(cli.stderr, /port 22 is not open .* frozen and the run has --ssh-thaws=false/);
    assert.equal(cold.state, "frozen");
    assert.ok(logs.some((l) => /^cold: ssh backdoor: refused a connection to port 22: the machine is frozen and --ssh-thaws is false/.test(l)), logs.join("\n"));
    await cold.thaw();
    assert.equal((await ssh(coldSock, ["echo after thaw"])).stdout, "after thaw");
  });
});
