import { connect, type Socket } from "node:net";

// The kill port. A guest's backdoor shell runs one command at a time and reads nothing while
// it runs, so a command past its timeout cannot be stopped through the shell itself. QEMU
// gives the guest a second virtio-serial port, named KILL_PORT_NAME (vm/qemu/qemu-argv.ts),
// whose host end is a UNIX socket QEMU listens on. Protocol: the host writes one line,
// "kill\n", per request; the guest's init (vm/image/guest-init.sh) answers it by sending
// SIGKILL to every process the backdoor shell has started, so the shell reports that command
// (its late answer is dropped) and serves the next one. Nothing comes back on the port.

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

  /** Ask the guest to kill the command its backdoor shell is running. */
  killRunningCommand(): void {
    if (!this.socket.destroyed) this.socket.write("kill\n");
  }

  close(): void {
    this.socket.destroy();
  }
}
