// The default guest image: built from Debian packages, cached, and booted for real under
// TCG (one boot serves every guest-side check, to keep the suite fast).

import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa, type ResultPromise } from "execa";
import { buildImage, DEFAULT_APPEND, guestAppend, guestKernelParams, type GuestImage } from "../vm/image/build-image.ts";
import { buildQemuArgv, QEMU_BINARY, QEMU_IDS } from "../vm/qemu/qemu-argv.ts";
import { QmpClient } from "../vm/qemu/qmp.ts";
import { ShellListener } from "../vm/qemu/shell-listener.ts";

const HOSTNAME = "hp-guest-1";
const VNET_MAC = "52:54:00:12:00:05";

let cacheDir: string;
let image: GuestImage;

before(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), "hp-image-test-"));
});
after(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

describe("image build", () => {
  it("builds kernel + initramfs from Debian packages, then reuses the cache; a new build drops images unused for 30 days", async () => {
    const log: string[] = [];
    // Two older images in the cache: one unused for 40 days, one used yesterday.
    for (const [key, days] of [["0000000000000040", 40], ["0000000000000001", 1]] as const) {
      await mkdir(join(cacheDir, key), { recursive: true });
      await writeFile(join(cacheDir, key, "manifest.json"), "{}");
      const t = new Date(Date.now() - days * 86_400_000);
      await utimes(join(cacheDir, key, "manifest.json"), t, t);
    }
    image = await buildImage({ cacheDir, log: (l) => log.push(l) });
    assert.ok(log.includes("removed image 0000000000000040, unused for over 30 days"), log.join("\n"));
    assert.deepEqual((await readdir(cacheDir)).sort(), ["0000000000000001", image.key].sort());
    assert.equal(image.reused, false);
    assert.equal(image.dir, join(cacheDir, image.key));
    assert.match(image.key, /^[0-9a-f]{16}$/);
    assert.match(image.kernelVersion, /^\d+\.\d+\.\d+-\d+-amd64$/, "the generic kernel (it has CONFIG_VMGENID, which snapshot boots need)");
    assert.ok((await stat(image.kernel)).size > 1_000_000, "kernel present");
    const initrd = await readFile(image.initrd);
    assert.deepEqual([...initrd.subarray(0, 2)], [0x1f, 0x8b], "initrd is gzip");

    const { stdout } = await execa("sh", ["-c", 'zcat "$1" | cpio -t --quiet', "sh", image.initrd]);
    const files = new Set(stdout.split("\n"));
    for (const f of ["init", "bin/busybox", "bin/bash", "usr/sbin/dropbear", "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libtomcrypt.so.1", "lib/modules/virtio_console.ko", "lib/modules/virtio_net.ko", "lib/modules/load-order"]) {
      assert.ok(files.has(f), `initramfs has ${f}`);
    }

    const again = await buildImage({ cacheDir });
    assert.equal(again.reused, true);
    assert.equal(again.key, image.key);
    assert.equal(again.initrd, image.initrd);
    assert.ok(!log.some((l) => l.includes("cached")), "first build was not a cache hit");
  });

  it("says to run apt-get update when apt knows no packages", async () => {
    const empty = await mkdtemp(join(tmpdir(), "hp-empty-lists-"));
    try {
      await assert.rejects(
        buildImage({ cacheDir, aptArgs: ["-o", `Dir::State::Lists=${empty}`] }),
        /^ImageBuildError: haltpoint image: apt-get cannot find linux-image-amd64; run `apt-get update` first/,
      );
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});

describe("guest kernel parameters", () => {
  it("encodes hp.* parameters as single words after DEFAULT_APPEND", () => {
    const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ+/x hp@test";
    const append = guestAppend({ hostname: "server", ip: "10.0.3.1/24", hosts: { client: "10.0.3.2", db: "10.0.3.3" }, authorizedKey: key }, "loglevel=7");
    assert.equal(
      append,
      `${DEFAULT_APPEND} hp.hostname=server hp.ip=10.0.3.1/24 hp.hosts=client:10.0.3.2,db:10.0.3.3 hp.authorized_key=${Buffer.from(key + "\n").toString("base64")} loglevel=7`,
    );
    assert.equal(guestKernelParams({}), "");
    assert.throws(() => guestKernelParams({ hostname: "two words" }), /may not contain spaces/);
    assert.throws(() => guestKernelParams({ ip: "10.0.3.1" }), /not ADDR\/PREFIX/);
    assert.throws(() => guestAppend({ authorizedKey: "ssh-rsa " + "A".repeat(2000) }), /over the 2047-byte limit/);
  });
});

/** A UNIX socket server that keeps everything its one client sends. */
async function collector(path: string): Promise<{ server: Server; data: () => Buffer }> {
  const chunks: Buffer[] = [];
  const server = createServer((s: Socket) => {
    s.on("error", () => {});
    s.on("data", (d: Buffer) => chunks.push(d));
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { server, data: () => Buffer.concat(chunks) };
}

const PEER_IP = [10, 0, 3, 16];
const PEER_MAC = Buffer.from("020000000016", "hex");

/**
 * A one-guest "hub" speaking QEMU's stream netdev framing (4-byte big-endian length +
 * Ethernet frame). It records every frame and answers ARP requests for PEER_IP, so the
 * guest can reach a peer that exists only here.
 */
async function arpAnsweringHub(path: string): Promise<{ server: Server; frames: Buffer[] }> {
  const frames: Buffer[] = [];
  const server = createServer((s: Socket) => {
    s.on("error", () => {});
    let buf = Buffer.alloc(0);
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const frame = buf.subarray(4, 4 + buf.readUInt32BE(0));
        buf = buf.subarray(4 + frame.length);
        frames.push(frame);
        const isArpRequest = frame.readUInt16BE(12) === 0x0806 && frame.readUInt16BE(20) === 1;
        if (!isArpRequest || !frame.subarray(38, 42).equals(Buffer.from(PEER_IP))) continue;
        const sender = frame.subarray(6, 12);
        const reply = Buffer.concat([
          sender, PEER_MAC, Buffer.from([0x08, 0x06]), // Ethernet: to the asker, from the peer, ARP
          Buffer.from([0, 1, 8, 0, 6, 4, 0, 2]), // Ethernet/IPv4, reply
          PEER_MAC, Buffer.from(PEER_IP), sender, frame.subarray(28, 32),
        ]);
        const len = Buffer.alloc(4);
        len.writeUInt32BE(reply.length);
        s.write(Buffer.concat([len, reply]));
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { server, frames };
}

async function freeLoopbackPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

async function until(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("guest boot under TCG", () => {
  let dir: string;
  let qemu: ResultPromise | undefined;
  let shell: ShellListener;
  let serial: Awaited<ReturnType<typeof collector>>;
  let hub: Awaited<ReturnType<typeof arpAnsweringHub>>;
  let qmp: QmpClient | undefined;
  let sshPort: number;
  let pubKey: string;
  let bootMs: number;
  let run: (cmd: string) => Promise<string>;

  before(async () => {
    if (!image) image = await buildImage({ cacheDir });
    dir = await mkdtemp(join(tmpdir(), "hp-boot-"));
    await execa("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "hp-test", "-f", join(dir, "id")]);
    pubKey = (await readFile(join(dir, "id.pub"), "utf8")).trim();
    shell = await ShellListener.listen(join(dir, "shell.sock"));
    serial = await collector(join(dir, "serial.sock"));
    hub = await arpAnsweringHub(join(dir, "hub.sock"));
    sshPort = await freeLoopbackPort();
    const argv = buildQemuArgv({
      name: "hp-image-test",
      kernel: image.kernel,
      initrd: image.initrd,
      append: guestAppend({ hostname: HOSTNAME, ip: "10.0.3.15/24", hosts: { peer: "10.0.3.16" }, authorizedKey: pubKey }),
      memoryMiB: 256,
      cores: 1,
      accel: "tcg",
      qmpSocket: join(dir, "qmp.sock"),
      shellSocket: shell.path,
      serial: { type: "socket", path: join(dir, "serial.sock"), logFile: join(dir, "serial.log") },
      userNetForwards: [{ hostPort: sshPort, guestPort: 22 }],
      vnet: { socketPath: join(dir, "hub.sock"), mac: VNET_MAC },
    });
    const started = Date.now();
    qemu = execa(QEMU_BINARY, argv, { reject: false, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    const exited = new AbortController();
    void qemu.then((r) => exited.abort(`QEMU exited: ${r.stderr}`));
    const ready = await shell.waitForMarker(60_000, exited.signal);
    bootMs = Date.now() - started;
    qmp = await QmpClient.connect(join(dir, "qmp.sock"));

    // Minimal command runner for the test: run `cmd`, then a sentinel line ends its output.
    let out = ready.rest.toString("utf8");
    ready.socket.on("data", (d: Buffer) => (out += d.toString("utf8")));
    ready.socket.resume();
    let n = 0;
    run = async (cmd) => {
      const end = `__hp_done_${++n}__\n`;
      const from = out.length;
      ready.socket.write(`${cmd}\necho ${end}`);
      await until(`output of ${JSON.stringify(cmd)}`, 20_000, () => out.indexOf(end, from) >= 0);
      return out.slice(from, out.indexOf(end, from)).trim();
    };
  });

  after(async () => {
    qmp?.close();
    qemu?.kill("SIGKILL");
    await qemu;
    await shell?.close();
    serial?.server.close();
    hub?.server.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("reaches the backdoor marker on hvc0", (t) => {
    t.diagnostic(`boot to "Spawning backdoor root shell..." under TCG: ${bootMs} ms`);
    assert.ok(bootMs < 30_000);
  });

  it("runs commands in bash on hvc0", async () => {
    assert.equal(await run("echo $((6*7))"), "42");
    assert.equal(await run('echo "$BASH_VERSION" | cut -d. -f1'), "5");
    assert.equal(await run("echo $PATH $HOME $(pwd)"), "/bin:/sbin:/usr/bin:/usr/sbin /root /root");
    assert.equal(await run("whoami"), "root");
  });

  it("sends bash's stderr to the serial console, not to hvc0", async () => {
    assert.equal(await run("echo hp-stderr-probe-$((40+2)) >&2"), "");
    await until("stderr text on the serial console", 5000, () => serial.data().includes("hp-stderr-probe-42"));
    assert.match(await readFile(join(dir, "serial.log"), "utf8"), /Spawning backdoor root shell\.\.\./);
  });

  it("applies hp.hostname, hp.hosts, hp.ip and hp.authorized_key", async () => {
    assert.equal(await run("hostname"), HOSTNAME);
    assert.match(await run("cat /etc/hosts"), /^10\.0\.3\.16 peer$/m);
    assert.match(await run("ip -o -4 addr show dev eth0"), /inet 10\.0\.2\.15\/24/);
    assert.match(await run("ip -o -4 addr show dev eth1"), /inet 10\.0\.3\.15\/24/);
    assert.match(await run("ip route"), /^default via 10\.0\.2\.2 dev eth0/m);
    assert.equal(await run("cat /etc/resolv.conf"), "nameserver 10.0.2.3");
    assert.equal(await run("cat /root/.ssh/authorized_keys"), pubKey);
    assert.equal(await run("stat -c %a /root/.ssh /root/.ssh/authorized_keys | tr '\\n' ' '"), "700 600");
    assert.equal(await run("cat /sys/class/net/eth1/address"), VNET_MAC);
  });

  it("frames eth1 traffic as 4-byte big-endian length + Ethernet frame, both ways", async () => {
    // The hub answers the ARP request; the guest then sends the ICMP echo to the peer's MAC.
    await run("ping -c 1 -W 1 10.0.3.16 >/dev/null 2>&1; true");
    const mac = Buffer.from(VNET_MAC.replaceAll(":", ""), "hex");
    assert.ok(hub.frames.length > 0, "frames reached the hub");
    assert.ok(hub.frames.every((f) => f.length >= 14 && f.subarray(6, 12).equals(mac)), "every frame comes from eth1's MAC");
    assert.ok(hub.frames.some((f) => f.readUInt16BE(12) === 0x0806), "guest → hub: an ARP request");
    const icmp = hub.frames.find((f) => f.readUInt16BE(12) === 0x0800 && f[23] === 1);
    assert.ok(icmp, "hub → guest: the ARP reply arrived, so the echo request followed");
    assert.ok(icmp.subarray(0, 6).equals(PEER_MAC), "the echo request goes to the MAC the hub announced");
    assert.match(await run("ip neigh show 10.0.3.16"), /lladdr 02:00:00:00:00:16/);
  });

  const sshArgs = (port: number) => [
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", "-i", join(dir, "id"), "-p", String(port), "root@127.0.0.1",
  ];

  it("lets the real OpenSSH client in through dropbear and a hostfwd", async () => {
    const r = await execa("ssh", [...sshArgs(sshPort), "uname", "-n"], { timeout: 60_000, stdin: "ignore" });
    assert.equal(r.stdout.trim(), HOSTNAME);
    // -B: root's blank password is enough, no key needed.
    const blank = await execa("ssh", [...sshArgs(sshPort), "-o", "PubkeyAuthentication=no", "id", "-un"], { timeout: 60_000, stdin: "ignore" });
    assert.equal(blank.stdout.trim(), "root");
  });

  it("accepts hp.authorized_key for public-key login (port forward added at run time)", async () => {
    // The image's dropbear also takes root's blank password (-B), and OpenSSH always tries
    // "none" first, so key login is checked on a second dropbear without -B.
    await run("dropbear -R -E -p 2022");
    const port = await freeLoopbackPort();
    assert.equal(await qmp!.humanMonitorCommand(`hostfwd_add ${QEMU_IDS.userNetdev} tcp:127.0.0.1:${port}-:2022`), "");
    const r = await execa("ssh", [...sshArgs(port), "-o", "PasswordAuthentication=no", "echo", "key-ok"], { timeout: 60_000, stdin: "ignore" });
    assert.equal(r.stdout.trim(), "key-ok");
    await until("dropbear's log line", 5000, () => /Pubkey auth succeeded for 'root'/.test(serial.data().toString("utf8")));
  });

  it("powers off on the ACPI power button (QMP system_powerdown)", async () => {
    await qmp!.systemPowerdown();
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([qemu!, new Promise((r) => (timer = setTimeout(() => r("still running"), 20_000)))]);
    clearTimeout(timer);
    assert.notEqual(r, "still running", "QEMU exited after system_powerdown");
    assert.equal((r as { exitCode?: number }).exitCode, 0);
    assert.match(serial.data().toString("utf8"), /reboot: Power down/);
  });
});
