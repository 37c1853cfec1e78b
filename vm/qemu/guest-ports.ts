import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { descendantsOf } from "../local/process-tree.ts";
import { HostForward } from "./host-forward.ts";
import { netNamespaceMode, type NetNamespaceMode } from "./net-namespace.ts";
import { NetnsRelay } from "./netns-relay.ts";
import { QEMU_IDS } from "./qemu-argv.ts";
import type { QmpClient } from "./qmp.ts";
import { fdOfSocket, newForwardPort, parseUsernet, socketInode } from "./usernet.ts";

/** What the guest's ports need from the machine that owns the QEMU process. */
export interface GuestPortsHost {
  readonly name: string;
  /** The machine's state dir (the relay's socket goes there). */
  readonly dir: string;
  /** The running QEMU's pid (undefined when it is not running). */
  qemuPid(): number | undefined;
  /** The QMP client of the running QEMU; throws when it is not running. */
  qmp(): QmpClient;
  /** The QMP client if there is one, without throwing (for polling). */
  qmpIfAny(): QmpClient | undefined;
  trackProcess(pid: number, alive: boolean): void;
  error(message: string): Error;
}

/**
 * The host's ways into a QEMU guest's TCP ports: user-network forwards on 127.0.0.1 (made on
 * first use, on a port the kernel picks), or, when QEMU runs in a network namespace of its
 * own (the SSH backdoor's), the same forwards inside that namespace reached through a byte
 * relay on a 0600 UNIX socket, so no other local user can reach them.
 */
export class GuestPorts {
  /** Loopback ports that forward to guest ports (user networking), by guest port. */
  private readonly loopbackForwards = new Map<number, Promise<number>>();
  /** Set before start: QEMU runs in a network namespace of its own (net-namespace.ts). */
  private netns: NetNamespaceMode | undefined;
  /** The relay into that namespace, started on first use. */
  private relay: Promise<NetnsRelay> | undefined;
  /** forwardPort()'s host listeners, when QEMU's own forwards are inside its namespace. */
  private readonly hostForwards: HostForward[] = [];

  constructor(private readonly host: GuestPortsHost) {}

  /** The namespace QEMU must be started in, if any (see usePrivateNetwork). */
  get namespace(): NetNamespaceMode | undefined {
    return this.netns;
  }

  /**
   * Before start: run QEMU in a network namespace of its own, so that the forwards to the
   * guest's ports (the SSH backdoor's) are on a loopback no other local user can reach.
   * Throws, saying why, where this host cannot make one.
   */
  usePrivateNetwork(): void {
    const mode = netNamespaceMode();
    if (mode.kind === "none") throw new Error(`cannot give qemu a network namespace of its own (${mode.why}), and a forward on the host's loopback would let every local user in`);
    this.netns = mode;
  }

  /** NixOS forward_port: 127.0.0.1:hostPort on the host reaches the guest's guestPort. */
  async forwardPort(hostPort: number, guestPort: number): Promise<void> {
    if (this.netns) {
      // QEMU's forward is inside its namespace: a fresh one there, and the host port here.
      const inner = await this.addForward(guestPort);
      const fwd = await HostForward.listen(hostPort, async () => (await (await this.relayIntoNamespace()).connect(inner)).socket).catch((e: Error) => {
        throw this.host.error(`forwardPort(${hostPort}, ${guestPort}): ${e.message}`);
      });
      this.hostForwards.push(fwd);
      return;
    }
    const out = await this.host.qmp().humanMonitorCommand(`hostfwd_add ${QEMU_IDS.userNetdev} tcp:127.0.0.1:${hostPort}-:${guestPort}`);
    if (out.trim()) throw this.host.error(`forwardPort(${hostPort}, ${guestPort}): ${out.trim()}`);
  }

  /**
   * A port on 127.0.0.1 (in QEMU's network namespace) that QEMU forwards to the guest's
   * `guestPort`, made on first use on a port the kernel picks (`hostfwd_add …:0`), so no
   * free-port race; read back from `info usernet`. Never bound beyond loopback.
   */
  loopbackForward(guestPort: number): Promise<number> {
    let p = this.loopbackForwards.get(guestPort);
    if (!p) {
      p = this.addForward(guestPort);
      p.catch(() => this.loopbackForwards.delete(guestPort));
      this.loopbackForwards.set(guestPort, p);
    }
    return p;
  }

  /** A new user-network forward from 127.0.0.1 (a port the kernel picks) to `guestPort`: its port. */
  private async addForward(guestPort: number): Promise<number> {
    const qmp = this.host.qmp();
    const before = parseUsernet(await qmp.humanMonitorCommand("info usernet"));
    const out = await qmp.humanMonitorCommand(`hostfwd_add ${QEMU_IDS.userNetdev} tcp:127.0.0.1:0-:${guestPort}`);
    if (out.trim()) throw this.host.error(`cannot forward a loopback port to guest port ${guestPort}: ${out.trim()}`);
    const port = newForwardPort(before, parseUsernet(await qmp.humanMonitorCommand("info usernet")), guestPort);
    if (port === undefined) throw this.host.error(`added a forward to guest port ${guestPort} but cannot find it in \`info usernet\``);
    return port;
  }

  /** The relay into QEMU's namespace (started on first use, for this QEMU process). */
  private relayIntoNamespace(): Promise<NetnsRelay> {
    const pid = this.host.qemuPid();
    if (!this.netns || pid === undefined) return Promise.reject(this.host.error("qemu is not running in a network namespace of its own"));
    if (!this.relay) {
      const relay = NetnsRelay.start(this.netns, pid, join(this.host.dir, "relay.sock")).then((r) => {
        if (r.pid !== undefined) this.host.trackProcess(r.pid, true);
        return r;
      });
      relay.catch(() => (this.relay = undefined));
      this.relay = relay;
    }
    return this.relay;
  }

  /**
   * A TCP connection to the guest's `guestPort` through a loopback forward, resolved once
   * the guest has accepted it (not merely QEMU: see usernet.ts), rejected if the guest
   * refuses or does not answer within `timeoutMs`. The socket comes back paused, with any
   * bytes the guest already sent put back.
   */
  async open(guestPort: number, timeoutMs = 15_000): Promise<Socket> {
    const hostPort = await this.loopbackForward(guestPort);
    let s: Socket;
    let localPort: number | undefined;
    if (this.netns) {
      ({ socket: s, innerLocalPort: localPort } = await (await this.relayIntoNamespace()).connect(hostPort));
      s.resume();
    } else {
      s = connect({ host: "127.0.0.1", port: hostPort, allowHalfOpen: true });
      await new Promise<void>((resolve, reject) => {
        s.once("connect", resolve);
        s.once("error", reject);
      });
      s.removeAllListeners("error");
      localPort = s.localPort;
    }
    const qemuPid = this.host.qemuPid();
    // The forward's connection table is QEMU's network namespace's (which may not be ours).
    const table = qemuPid !== undefined ? `/proc/${qemuPid}/net/tcp` : "/proc/net/tcp";
    const refused = (): Error => this.host.error(`guest port ${guestPort} is not open (the guest refused the connection)`);
    return new Promise<Socket>((resolve, reject) => {
      const head: Buffer[] = [];
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        s.off("data", onData);
        s.off("end", onEnd);
        s.off("close", onEnd);
        s.off("error", onEnd);
        if (err) {
          s.destroy();
          return reject(err);
        }
        s.pause();
        if (head.length) s.unshift(Buffer.concat(head));
        resolve(s);
      };
      const onData = (d: Buffer): void => {
        head.push(d);
        finish();
      };
      const onEnd = (): void => finish(refused());
      s.on("data", onData);
      s.on("end", onEnd);
      s.on("close", onEnd);
      s.on("error", onEnd);
      void (async () => {
        const started = Date.now();
        let fd: number | undefined;
        while (!done) {
          await new Promise((r) => setTimeout(r, fd === undefined ? 5 : 20));
          if (done) return;
          if (Date.now() - started > timeoutMs) return finish(this.host.error(`guest port ${guestPort} did not answer within ${timeoutMs / 1000} s`));
          if (fd === undefined) {
            const inode = localPort !== undefined ? socketInode(hostPort, localPort, table) : undefined;
            const pid = this.host.qemuPid();
            if (inode !== undefined && pid !== undefined) fd = fdOfSocket([pid, ...descendantsOf(pid)], inode);
            // /proc does not tell (hidepid, another user's QEMU): still open after a while counts as accepted.
            if (fd === undefined && Date.now() - started > 1000) return finish();
            if (fd === undefined) continue;
          }
          const text = await this.host.qmpIfAny()?.humanMonitorCommand("info usernet").catch(() => undefined);
          if (text === undefined) return finish(this.host.error("qemu is not running"));
          const row = parseUsernet(text).find((r) => r.fd === fd && r.state !== "HOST_FORWARD");
          if (row && row.state !== "SYN_SENT" && row.state !== "SYN_RECEIVED") return finish();
          // No row: slirp dropped it (the guest refused); our socket's end follows.
        }
      })();
    });
  }

  /** QEMU is gone or starts again: its forwards (and, in its own namespace, its relay) with it. */
  async close(): Promise<void> {
    this.loopbackForwards.clear();
    for (const f of this.hostForwards.splice(0)) await f.close();
    const relay = await this.relay?.catch(() => undefined);
    this.relay = undefined;
    if (relay) {
      const pid = relay.pid;
      await relay.stop();
      if (pid !== undefined) this.host.trackProcess(pid, false);
    }
  }
}
