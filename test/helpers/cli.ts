import { execa } from "execa";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BIN = fileURLToPath(new URL("../../bin/haltpoint.mjs", import.meta.url));

/** Run the real `haltpoint` CLI in a child process. */
export function haltpoint(args: string[], opts: { env?: Record<string, string>; timeout?: number; input?: string; cwd?: string } = {}) {
  return execa("node", [BIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    reject: false,
    all: true,
    env: { CI: "true", NO_COLOR: "1", ...opts.env },
    timeout: opts.timeout ?? 120_000,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
}

/** Follow a spawned CLI's output and wait for lines in it. */
export function watchOutput(child: ReturnType<typeof haltpoint>, defaultWaitMs = 60_000) {
  let out = "";
  child.all!.on("data", (c) => (out += c));
  return {
    text: () => out,
    async waitFor(re: RegExp, ms = defaultWaitMs): Promise<RegExpExecArray> {
      const end = Date.now() + ms;
      for (;;) {
        const m = re.exec(out);
        if (m) return m;
        if (Date.now() > end) throw new Error(`timed out waiting for ${re}; output so far:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
