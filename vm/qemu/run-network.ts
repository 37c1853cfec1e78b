import { join } from "node:path";
import type { ResolvedNode } from "../node-options.ts";
import { VnetHub, vnetAddress, vnetMac } from "./vnet-hub.ts";

/**
 * One run's virtual network: every qemu machine of the test gets a second NIC on the
 * run's own hub, an address by node order, and every other machine's name in /etc/hosts
 * (so `server` resolves inside `client`). Only built when a test has two or more guests.
 */
export class RunNetwork {
  private hubPromise: Promise<VnetHub> | undefined;
  private readonly members: ResolvedNode[];

  constructor(
    private readonly stateDir: string,
    nodes: ResolvedNode[],
  ) {
    this.members = nodes.filter((n) => n.backend === "qemu");
  }

  get needed(): boolean {
    return this.members.length >= 2;
  }

  hub(): Promise<VnetHub> {
    this.hubPromise ??= VnetHub.listen(join(this.stateDir, "vnet.sock"));
    return this.hubPromise;
  }

  private index(name: string): number {
    const i = this.members.findIndex((n) => n.name === name);
    if (i < 0) throw new Error(`machine ${name} is not on this run's virtual network`);
    return i;
  }

  address(name: string): string {
    return vnetAddress(this.index(name));
  }

  mac(name: string): string {
    return vnetMac(this.index(name));
  }

  hosts(): Record<string, string> {
    return Object.fromEntries(this.members.map((n, i) => [n.name, vnetAddress(i)]));
  }

  async close(): Promise<void> {
    if (this.hubPromise) await (await this.hubPromise.catch(() => undefined))?.close();
  }
}
