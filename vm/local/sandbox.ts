import { execaSync } from "execa";

/**
 * How a local machine's shell is isolated. Where `unshare` allows (root, or user
 * namespaces enabled), the shell is PID 1 of its own PID namespace (so everything it
 * started dies with it: nothing outlives `crash()`), with its own hostname (the machine's
 * name) and its own /proc. Elsewhere it is a plain shell in its own process group.
 */
let cached: string[] | undefined;

const NS_FLAGS = ["--pid", "--fork", "--kill-child", "--mount-proc", "--uts"];

function probe(args: string[]): boolean {
  try {
    return execaSync("unshare", [...args, "true"], { timeout: 5000, reject: false }).exitCode === 0;
  } catch {
    return false;
  }
}

/** The command prefix that puts a process into its own namespaces: [] if none works. */
export function sandboxPrefix(): string[] {
  if (cached) return cached;
  if (process.env.HALTPOINT_LOCAL_NAMESPACES === "0") return (cached = []);
  if (probe(NS_FLAGS)) cached = ["unshare", ...NS_FLAGS];
  else if (probe(["--user", "--map-root-user", ...NS_FLAGS])) cached = ["unshare", "--user", "--map-root-user", ...NS_FLAGS];
  else cached = [];
  return cached;
}

/** The one line a run prints at start when local machines get no namespaces, else undefined. */
export function sandboxNotice(): string | undefined {
  if (sandboxPrefix().length) return undefined;
  const why = process.env.HALTPOINT_LOCAL_NAMESPACES === "0" ? "HALTPOINT_LOCAL_NAMESPACES=0" : "unshare is not permitted here, not even with --user";
  return `local machines run without their own namespaces (${why}): no own hostname, PID namespace or private /tmp; each is a shell in its own process group`;
}
