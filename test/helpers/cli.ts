import { execa } from "execa";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BIN = fileURLToPath(new URL("../../bin/haltpoint.mjs", import.meta.url));

/** Run the real `haltpoint` CLI in a child process. */
export function haltpoint(args: string[], opts: { env?: Record<string, string>; timeout?: number; input?: string } = {}) {
  return execa("node", [BIN, ...args], {
    cwd: ROOT,
    reject: false,
    all: true,
    env: { CI: "true", NO_COLOR: "1", ...opts.env },
    timeout: opts.timeout ?? 120_000,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
}
