import { connect, type Socket } from "node:net";

// The kill port. A guest's backdoor shell runs one command at a time and reads nothing while
// it runs, so a command past its timeout cannot be stopped through the shell itself. QEMU
// gives the guest a second virtio-serial port, named KILL_PORT_NAME (vm/qemu/qemu-argv.ts),
// whose host end is a UNIX socket QEMU listens on. Protocol: the host writes one line,
// "kill <id>\n", per request, <id> being the backdoor command's (vm/backdoor-shell.ts); the
// guest's init (vm/image/guest-init.sh) answers it by sending SIGKILL to that command's
// subshell and everything under it — found through the file each command's subshell writes
// "<id> <pid>" to (RUNNING_FILE) — so the shell reports that command (its late answer is
// dropped) and serves the next one. A request for a command that already ended does nothing:
// the next command, already running by then, is never hit. Nothing comes back on the port.

/** Where the guest's backdoor commands record "<id> <pid>" (a tmpfs file in the guest). */
export const RUNNING_FILE = "/tmp/.hp-running";

/** The host end of one guest's kill port. */
export class GuestKillPort {
  private constructor(private readonly socket: Socket) {
    socket.on("error", () => {}); // a guest that is gone: requests are best effort
  }

  /**
   * Connect to QEMU's end of the port. Undefined when QEMU has no such port (a start script
   * that drops our options) or does not accept within `timeoutMs`.
   */
  static connect(path: string, timeoutMs = 5000): Promise<GuestKillPort | undefined> {
    return new Promise((resolve) => {
      const socket = connect(path);
      const timer = setTimeout(() => (socket.destroy(), resolve(undefined)), timeoutMs);
      socket.once("connect", () => (clearTimeout(timer), resolve(new GuestKillPort(socket))));
      socket.once("error", () => (clearTimeout(timer), resolve(undefined)));
    });
  }

  /** Ask the guest to kill backdoor command `id` if it is still running. */
  killCommand(id: number): void {
    if (!this.socket.destroyed) this.socket.write(`kill ${id}\n`);
  }

  close(): void {
    this.socket.destroy();
  }
}
