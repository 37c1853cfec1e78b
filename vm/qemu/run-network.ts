import { join } from "node:path";
import type { ResolvedNode } from "../node-options.ts";
import { VnetHub, vnetAddress, vnetMac } from "./vnet-hub.ts";

/** One NIC of a machine: on which vlan, with which address and MAC. */
export interface VlanNic {
  vlan: number;
  address: string;
  mac: string;
}

/**
 * One run's virtual networks: each vlan (node option `vlans`, default [1], as NixOS) is a hub
 * of its own, and a qemu machine gets one NIC per vlan it is on, an address by node order
 * (192.168.<vlan>.<n>), and in /etc/hosts the name of every machine it shares a vlan with
 * (so `server` resolves inside `client`). Only built when a test has two or more guests.
 */
export class RunNetwork {
  private readonly hubs = new Map<number, Promise<VnetHub>>();
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

  hub(vlan = 1): Promise<VnetHub> {
    let h = this.hubs.get(vlan);
    if (!h) this.hubs.set(vlan, (h = VnetHub.listen(join(this.stateDir, vlan === 1 ? "vnet.sock" : `vnet${vlan}.sock`))));
    return h;
  }

  private index(name: string): number {
    const i = this.members.findIndex((n) => n.name === name);
    if (i < 0) throw new Error(`machine ${name} is not on this run's virtual network`);
    return i;
  }

  vlansOf(name: string): number[] {
    return this.members[this.index(name)]!.options.vlans ?? [1];
  }

  /** The machine's NICs in order: the first is eth1 (after the user-network eth0), then eth2, … */
  nics(name: string): VlanNic[] {
    const i = this.index(name);
    return this.vlansOf(name).map((vlan) => ({ vlan, address: vnetAddress(i, vlan), mac: vnetMac(i, vlan) }));
  }

  address(name: string): string {
    return this.nics(name)[0]!.address;
  }

  mac(name: string): string {
    return this.nics(name)[0]!.mac;
  }

  /**
   * Every machine's name for `name`'s /etc/hosts: the address on the first vlan they share,
   * else the machine's address on its own first vlan (its primary address, as a NixOS test
   * lists every node: a client behind a router reaches `server` by name through the route).
   */
  hosts(name?: string): Record<string, string> {
    const mine = name ? this.vlansOf(name) : undefined;
    const out: Record<string, string> = {};
    this.members.forEach((n, i) => {
      const theirs = n.options.vlans ?? [1];
      const shared = mine?.find((v) => theirs.includes(v));
      out[n.name] = vnetAddress(i, shared ?? theirs[0]!);
    });
    return out;
  }

  async close(): Promise<void> {
    for (const h of this.hubs.values()) await (await h.catch(() => undefined))?.close();
  }
}

/** NICs after the first (eth2, eth3, …): the hub of each one's vlan. */
export async function vlanNics(net: RunNetwork, name: string): Promise<Array<{ hubPath: string; mac: string }>> {
  return Promise.all(net.nics(name).slice(1).map(async (n) => ({ hubPath: (await net.hub(n.vlan)).path, mac: n.mac })));
}

/** The guest command that configures eth2… in NIC order (PCI slots follow the -device order), /24. */
export function vlanSetupCommand(nics: VlanNic[]): string {
  return nics.map((n, i) => `ip link set eth${i + 2} up && ip addr add ${n.address}/24 dev eth${i + 2}`).join(" && ");
}
