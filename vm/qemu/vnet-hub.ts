import { rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";

/**
 * The virtual network between one test's guests: a hub on a UNIX socket that each guest's
 * second NIC connects to (`-netdev stream`). Every Ethernet frame one guest sends (framed
 * as a 4-byte big-endian length + the frame) is repeated to every other guest, as a hub
 * does. Each run has its own hub, so parallel tests never share a network.
 */
export class VnetHub {
  private ports = new Set<Socket>();
  frames = 0;

  private constructor(
    readonly path: string,
    private readonly server: Server,
  ) {
    server.on("connection", (s) => this.attach(s));
  }

  static async listen(path: string): Promise<VnetHub> {
    await rm(path, { force: true });
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return new VnetHub(path, server);
  }

  get connections(): number {
    return this.ports.size;
  }

  private attach(s: Socket): void {
    this.ports.add(s);
    let buf: Buffer = Buffer.alloc(0);
    s.on("data", (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 4) {
        const len = buf.readUInt32BE(0);
        if (buf.length < 4 + len) break;
        const frame = buf.subarray(0, 4 + len);
        buf = buf.subarray(4 + len);
        this.frames++;
        for (const other of this.ports) if (other !== s && !other.destroyed) other.write(frame);
      }
    });
    s.on("error", () => {});
    s.on("close", () => this.ports.delete(s));
  }

  async close(): Promise<void> {
    for (const s of this.ports) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
    await rm(this.path, { force: true });
  }
}

/** Addresses on a run's virtual network (vlan), by node order, as NixOS: 192.168.<vlan>.1, .2, … */
export function vnetAddress(index: number, vlan = 1): string {
  if (index < 0 || index > 250) throw new Error("at most 250 machines on one virtual network");
  return `192.168.${vlan}.${index + 1}`;
}

export function vnetMac(index: number, vlan = 1): string {
  return `52:54:00:12:${vlan.toString(16).padStart(2, "0")}:${(index + 1).toString(16).padStart(2, "0")}`;
}
