import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { findOnPath } from "../find-on-path.ts";
import { withParentDeathSignal } from "../parent-death.ts";
import type { NodeOptions } from "../types.ts";
import { qemuOptValue } from "./qemu-argv.ts";

// vhost-device-vsock (rust-vmm): a vhost-user daemon that gives a guest a virtio-vsock
// device without /dev/vhost-vsock, and exposes it on the host as a hybrid-vsock UNIX socket
// (`CONNECT <port>` → the guest's AF_VSOCK port). Where it is installed, a guest that
// listens on AF_VSOCK (sshd through systemd ≥ 256's systemd-ssh-generator, as NixOS's
// sshBackdoor sets up) is reached through it instead of a user-network port forward.
//
// Not packaged in Debian 12; this path is only exercised where the binary is on PATH.

export const VHOST_VSOCK_BINARY = "vhost-device-vsock";
/** Each machine has its own daemon and device, so every guest can be CID 3. */
export const GUEST_CID = 3;

/**
 * Whether a qemu machine's SSH backdoor goes through vhost-device-vsock.
 * HALTPOINT_SSH_VSOCK=off never, =on whenever installed; the default (auto) only for guests
 * that bring their own kernel or disk: haltpoint's own image runs dropbear on TCP only, so
 * it is reached through a port forward. NixOS-style start scripts carry their own -m and
 * memory backends, which vhost-user must share: they use the forward too.
 */
export function wantsVhostVsock(options: NodeOptions, env: NodeJS.ProcessEnv = process.env): boolean {
  const mode = (env.HALTPOINT_SSH_VSOCK ?? "auto").toLowerCase();
  if (mode === "off" || mode === "0" || mode === "false") return false;
  if (options.startScript || !findOnPath(VHOST_VSOCK_BINARY, env.PATH)) return false;
  if (mode === "on" || mode === "1" || mode === "true") return true;
  return Boolean(options.diskImage || options.kernel);
}

/** The QEMU arguments for a vhost-user vsock device; vhost-user needs guest memory it can map. */
export function vhostVsockArgs(vhostSocket: string, memoryMiB: number): string[] {
  return [
    "-object", `memory-backend-memfd,id=hpmem,size=${memoryMiB}M,share=on`,
    "-machine", "memory-backend=hpmem",
    "-chardev", `socket,id=hpvsock,path=${qemuOptValue(vhostSocket)}`,
    "-device", "vhost-user-vsock-pci,chardev=hpvsock",
  ];
}

/** One machine's vhost-device-vsock daemon. */
export class VhostVsockDaemon {
  private constructor(
    readonly proc: ResultPromise,
    /** QEMU connects here (vhost-user). */
    readonly vhostSocket: string,
    /** The hybrid-vsock socket: `CONNECT <port>` reaches the guest's AF_VSOCK port. */
    readonly udsPath: string,
  ) {}

  static async start(vhostSocket: string, udsPath: string, timeoutMs = 5000): Promise<VhostVsockDaemon> {
    await rm(vhostSocket, { force: true });
    await rm(udsPath, { force: true });
    const [cmd, ...args] = withParentDeathSignal([VHOST_VSOCK_BINARY, "--guest-cid", String(GUEST_CID), "--socket", vhostSocket, "--uds-path", udsPath]);
    const proc = execa(cmd!, args, {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      buffer: false,
      reject: false,
      cleanup: true,
      detached: true,
    });
    let stderr = "";
    proc.stderr?.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    let exited = false;
    void proc.then(() => (exited = true));
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(vhostSocket)) {
      if (exited || Date.now() > deadline) {
        proc.kill("SIGKILL");
        throw new Error(`${VHOST_VSOCK_BINARY} did not create ${vhostSocket}${exited ? " (it exited)" : ""}: ${stderr.trim().split("\n").pop() ?? ""}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return new VhostVsockDaemon(proc, vhostSocket, udsPath);
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  async stop(): Promise<void> {
    this.proc.kill("SIGKILL");
    await this.proc.catch(() => {}); // killed: its rejection is the kill we asked for
    // Both sockets are tried; what failed is the caller's to log (qemu-lifecycle.ts).
    const failed = (await Promise.allSettled([rm(this.vhostSocket, { force: true }), rm(this.udsPath, { force: true })])).filter((r) => r.status === "rejected");
    if (failed.length) throw new Error(failed.map((r) => String((r as PromiseRejectedResult).reason?.message ?? r)).join("; "));
  }
}
