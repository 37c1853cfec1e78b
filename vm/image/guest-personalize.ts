// Making a guest restored from a shared snapshot this run's own machine: what /init takes
// from the kernel command line on a cold boot (guest-params.ts) is applied through the
// backdoor shell instead, together with what a clone would otherwise share with its
// siblings (clock, randomness, MAC addresses).

import { randomBytes } from "node:crypto";
import type { GuestParams } from "./guest-params.ts";

export interface GuestIdentity extends GuestParams {
  /** MAC and address (ADDR/PREFIX) of each NIC on a virtual network, eth1 first. */
  nics: { mac: string; ip: string }[];
}

/** A line of the command's output: the guest's uptime before and after it waited for the reseed. */
export const UPTIME_LINE = "hp-reseed-uptime";

/** How long the guest waited for its CRNG's reseed (ms, 10 ms resolution), from the command's output. */
export function reseedWaitMs(stdout: string): number | undefined {
  const [before, after] = [...stdout.matchAll(new RegExp(`^${UPTIME_LINE} (\\d+\\.\\d+)`, "gm"))].map((m) => Number(m[1]));
  return before === undefined || after === undefined ? undefined : Math.round((after - before) * 1000);
}

/** Where a restored guest's identity command leaves its uptime lines (read them with reseedWaitMs). */
export const RESEED_FILE = "/tmp/.hp-reseed";

/** The kernel's line when the VM generation id changed and it reseeded its CRNG. */
export const VMFORK_RESEED_LINE = "crng reseeded due to virtual machine fork";

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * One shell command that gives a restored guest its identity. `restored`: the guest came from
 * a snapshot, so it also waits (up to about 1 s) for the kernel to reseed its CRNG from the new VM
 * generation id QEMU's vmgenid device presents — from then on /dev/urandom is its own — and
 * mixes 32 bytes from the host into the pool as well.
 *
 * Run by the guest's backdoor bash. Under TCG every program a waking guest starts costs tens of
 * ms (fork, exec, code translated afresh after a restore), so what bash can do itself it does:
 * /proc/uptime, the hostname (/proc/sys/kernel/hostname), /etc/hosts and the host's random bytes
 * are builtins; `date -s` and `dmesg` (once, unless the reseed is not in yet) are the programs a
 * restored guest without NICs runs. `byPrograms`: the same facts with a program each, as before
 * (bench/vm measures one against the other).
 */
export function personalizeCommand(id: GuestIdentity, o: { restored: boolean; nowMs?: number; byPrograms?: boolean; prepared?: boolean }): string {
  if (o.byPrograms) return personalizeByPrograms(id, o);
  if (o.prepared) return preparedIdentity(id, o);
  const { name, hosts } = nameAndHosts(id);
  // The later of two clocks, each of which can only be behind: QEMU's RTC, which follows the
  // host's clock (also while the guest was saved, stopped or not yet running), so it is right
  // however late the command runs — but a restored guest's RTC was seen 2 s behind on a loaded
  // host (test/snapshot-boot.test.ts) — and the host's time when the command was made.
  const parts: string[] = [`${laterClock(o.nowMs)}; date -s @$hp_t > /dev/null`];
  if (o.restored) {
    parts.push("read -r hp_u0 _ < /proc/uptime", DMESG_RESEED_WAIT, ...reseedDone());
  }
  parts.push(...nameParts(name, hosts));
  parts.push(...nicAndKeyParts(id, o.restored));
  return parts.join("\n");
}

/** The later of two clocks into $hp_t (see personalizeCommand). */
function laterClock(nowMs: number | undefined): string {
  const hostNow = Math.round((nowMs ?? Date.now()) / 1000);
  return `hp_t=${hostNow}; read -r hp_r < /sys/class/rtc/rtc0/since_epoch 2>/dev/null && ((hp_r > hp_t)) && hp_t=$hp_r`;
}

/** Polls the kernel log with `dmesg` until the reseed is in (up to about 1 s). */
export const DMESG_RESEED_WAIT = `hp_i=0; until [[ $(dmesg) == *${q(VMFORK_RESEED_LINE)}* ]]; do hp_i=$((hp_i+1)); [ $hp_i -gt 100 ] && { echo "haltpoint: the kernel did not reseed its CRNG after the restore" >&2; break; }; usleep 10000 2>/dev/null || sleep 0.01; done`;

/** After the reseed wait: its uptimes into RESEED_FILE, the host's random bytes into the pool. */
function reseedDone(): string[] {
  const bytes = [...randomBytes(32)].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
  return [
    "read -r hp_u1 _ < /proc/uptime",
    // Into a file, not stdout: a command with output costs the waking guest a base64 (the
    // shell's framing), tens of ms under TCG. bench/vm reads it afterwards (RESEED_FILE).
    `printf '${UPTIME_LINE} %s\\n' "$hp_u0" "$hp_u1" > ${RESEED_FILE}`,
    `printf '${bytes}' > /dev/urandom`,
  ];
}

/** The guest's hostname and its /etc/hosts lines. */
function nameAndHosts(id: GuestIdentity): { name: string; hosts: string[] } {
  const name = id.hostname ?? "haltpoint";
  return { name, hosts: ["127.0.0.1 localhost", `127.0.1.1 ${name}`, ...Object.entries(id.hosts ?? {}).map(([n, a]) => `${a} ${n}`)] };
}

function nameParts(name: string, hosts: string[]): string[] {
  return [`echo ${q(name)} > /proc/sys/kernel/hostname`, `echo ${q(name)} > /etc/hostname`, `printf '%s\\n' ${hosts.map(q).join(" ")} > /etc/hosts`];
}

function nicAndKeyParts(id: GuestIdentity, restored: boolean): string[] {
  const parts: string[] = [];
  id.nics.forEach((n, i) => {
    const dev = `eth${i + 1}`;
    // A restored guest's NICs on virtual networks have no address yet (the snapshot's guest
    // booted with none) and no neighbours; after a reboot they may have both.
    if (restored) parts.push(`ip link set dev ${dev} address ${n.mac} up`, `ip addr add ${n.ip} dev ${dev}`);
    else parts.push(`ip link set ${dev} down`, `ip link set ${dev} address ${n.mac}`, `ip addr flush dev ${dev}`, `ip addr add ${n.ip} dev ${dev}`, `ip link set ${dev} up`, "ip neigh flush all 2>/dev/null || true");
  });
  if (id.authorizedKey !== undefined) {
    parts.push(`printf '%s\\n' ${q(id.authorizedKey.trim())} > /root/.ssh/authorized_keys`, "chmod 0600 /root/.ssh/authorized_keys");
  }
  return parts;
}

/**
 * A restored guest's identity through what its shell prepared before the snapshot was saved
 * (guest-restore-prep.ts `__hp_restored`), run by the backdoor bash itself, not in a command's
 * subshell (BackdoorShell.runInShell: no fork). NICs and an authorized key follow as before;
 * the parts are chained with && (the shell's own `set -e` would end it): the status is the
 * first failing part's.
 */
function preparedIdentity(id: GuestIdentity, o: { restored: boolean; nowMs?: number }): string {
  const { name, hosts } = nameAndHosts(id);
  const call = `__hp_restored ${Math.round((o.nowMs ?? Date.now()) / 1000)} ${randomBytes(32).toString("hex")} ${[name, ...hosts].map(q).join(" ")}`;
  return [call, ...nicAndKeyParts(id, o.restored)].map((p) => `{ ${p}\n}`).join(" &&\n");
}

/** The identity step as it was before issue #26: a program per fact (bench/vm compares). */
function personalizeByPrograms(id: GuestIdentity, o: { restored: boolean; nowMs?: number }): string {
  const { name, hosts } = nameAndHosts(id);
  // First, so that the time is the host's when the command is sent, to within its latency.
  // Also for the guest that saved the snapshot: its clock stood still while it was saved.
  const parts: string[] = [`date -s @${Math.round((o.nowMs ?? Date.now()) / 1000)} > /dev/null`];
  if (o.restored) {
    parts.push(
      `echo ${UPTIME_LINE} $(cut -d' ' -f1 /proc/uptime)`,
      `i=0; until dmesg | grep -c ${q(VMFORK_RESEED_LINE)} > /dev/null; do i=$((i+1)); [ $i -gt 100 ] && { echo "haltpoint: the kernel did not reseed its CRNG after the restore" >&2; break; }; usleep 10000 2>/dev/null || sleep 0.01; done`,
      `echo ${UPTIME_LINE} $(cut -d' ' -f1 /proc/uptime)`,
      `echo ${randomBytes(32).toString("base64")} | base64 -d > /dev/urandom`,
    );
  }
  parts.push(`hostname ${q(name)}`, `echo ${q(name)} > /etc/hostname`, `printf '%s\\n' ${hosts.map(q).join(" ")} > /etc/hosts`);
  id.nics.forEach((n, i) => {
    const dev = `eth${i + 1}`;
    parts.push(`ip link set ${dev} down`, `ip link set ${dev} address ${n.mac}`, `ip addr flush dev ${dev}`, `ip addr add ${n.ip} dev ${dev}`, `ip link set ${dev} up`);
  });
  if (id.authorizedKey !== undefined) {
    parts.push(`printf '%s\\n' ${q(id.authorizedKey.trim())} > /root/.ssh/authorized_keys`, "chmod 0600 /root/.ssh/authorized_keys");
  }
  // Neighbours a clone learnt before the snapshot are not this run's.
  parts.push("ip neigh flush all 2>/dev/null || true");
  return parts.join("\n");
}
