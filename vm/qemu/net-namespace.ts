import { execaSync } from "execa";

// A QEMU in a network namespace of its own, so that its user-network forwards
// (`hostfwd=tcp:127.0.0.1:…`) listen on a loopback no other process of the host shares: the
// SSH backdoor reaches the guest's sshd (root, blank password) through them, and on the host's
// loopback any local user could connect too. Only haltpoint's relay (netns-relay.ts), started
// inside the same namespace, reaches those ports, and it listens on a UNIX socket in the
// run's private directory.
//
// As root, `unshare --net`; otherwise a user namespace around it (`--user --map-root-user`)
// gives the rights to make one. Loopback starts down in a new namespace (connect() fails with
// ENETUNREACH), so `ip link set lo up` runs first, then QEMU is exec'd: it keeps the pid the
// worker spawned, which is what freeze, kill and the process ledger use.

export type NetNamespaceMode = { kind: "root" } | { kind: "user" } | { kind: "none"; why: string };

let cached: NetNamespaceMode | undefined;

const UP_LO = "ip link set lo up";

/** How this host lets haltpoint make a network namespace (probed once per process). */
export function netNamespaceMode(): NetNamespaceMode {
  if (cached) return cached;
  const probe = (args: string[]): string | undefined => {
    const r = execaSync("unshare", [...args, "--", "sh", "-c", UP_LO], { reject: false, stdin: "ignore" });
    return r.exitCode === 0 ? undefined : String(r.stderr || r.message).trim().split("\n")[0] ?? "failed";
  };
  const rootWhy = probe(["--net"]);
  if (rootWhy === undefined) return (cached = { kind: "root" });
  const userWhy = probe(["--user", "--map-root-user", "--net"]);
  if (userWhy === undefined) return (cached = { kind: "user" });
  return (cached = { kind: "none", why: `unshare --net: ${rootWhy}; unshare --user --net: ${userWhy}` });
}

/** `argv` run inside a new network namespace with its loopback up. */
export function inOwnNetNamespace(mode: NetNamespaceMode, argv: string[]): string[] {
  if (mode.kind === "none") throw new Error(`no network namespace for QEMU: ${mode.why}`);
  const unshare = mode.kind === "root" ? ["unshare", "--net"] : ["unshare", "--user", "--map-root-user", "--net"];
  return [...unshare, "--", "sh", "-c", `${UP_LO} && exec "$@"`, "haltpoint-netns", ...argv];
}

/** The prefix that runs a command in the network namespace of process `pid`. */
export function enterNetNamespace(mode: NetNamespaceMode, pid: number): string[] {
  if (mode.kind === "none") throw new Error(`no network namespace for QEMU: ${mode.why}`);
  // --preserve-credentials: stay ourselves inside the user namespace (setgroups is denied there).
  return mode.kind === "root" ? ["nsenter", `--target=${pid}`, "--net", "--"] : ["nsenter", `--target=${pid}`, "--user", "--net", "--preserve-credentials", "--"];
}
