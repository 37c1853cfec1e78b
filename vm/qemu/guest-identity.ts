// A guest's identity in this run (hostname, address, /etc/hosts, NICs): on the kernel command
// line at a cold boot, or through the backdoor shell for a guest that booted from a snapshot
// with the image's generic one.

import { guestAppend } from "../image/guest-params.ts";
import { personalizeCommand } from "../image/guest-personalize.ts";
import type { RunNetwork } from "./run-network.ts";

/** The kernel command line that gives machine `name` its identity at boot (cold boots). */
export function identityAppend(name: string, net: RunNetwork | undefined, onVnet: boolean, extra: string | undefined): string {
  return guestAppend(
    {
      hostname: name,
      ip: onVnet ? `${net!.address(name)}/24` : undefined,
      hosts: onVnet ? net!.hosts(name) : undefined,
    },
    extra,
  );
}

/** The shell command that gives a snapshot-booted guest machine `name`'s identity. */
export function identityCommand(name: string, net: RunNetwork | undefined, restored: boolean, byPrograms = false, prepared = false): string {
  const nics = net?.needed ? net.nics(name).map((n) => ({ mac: n.mac, ip: `${n.address}/24` })) : [];
  return personalizeCommand({ hostname: name, hosts: net?.needed ? net.hosts(name) : undefined, nics }, { restored, byPrograms, prepared });
}
