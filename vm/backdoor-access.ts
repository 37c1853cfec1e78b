import type { Duplex } from "node:stream";
import type { LocalMachine } from "./local/local-machine.ts";

/**
 * How the SSH backdoor (hooks/ssh/ssh-backdoor.ts) reaches a machine's TCP ports; each backend
 * says which, before the machine starts (it may change how the machine is started).
 * - `sandbox`: a local machine shares the host's network; its port 22 is an SSH server that
 *   haltpoint runs inside the sandbox (hooks/ssh/local-ssh-server.ts).
 * - `vsock`: a hybrid-vsock socket (vhost-device-vsock) whose `CONNECT <port>` reaches the guest.
 * - `ports`: a connection the guest has accepted on a port (QEMU user networking, in a network
 *   namespace of its own); errors are MachineErrors.
 */
export type BackdoorAccess =
  | { kind: "sandbox"; machine: LocalMachine }
  | { kind: "vsock"; socket(): string | undefined }
  | { kind: "ports"; open(port: number): Promise<Duplex> };
