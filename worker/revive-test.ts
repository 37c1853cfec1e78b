// The test `haltpoint revive BUNDLE` runs (orchestrator/commands/revive.ts): the bundle's qemu
// machines, which the qemu backend loads from their saved state (QemuRuntime.revive) and
// leaves stopped; the script then fails with the original error, so the run halts at a
// breakpoint exactly as a live one does: console, SSH sockets, ls/attach/release.
import { defineTest } from "../index.ts";
import { readManifest } from "../hooks/bundles/bundle-format.ts";
import type { NodeOptions } from "../vm/types.ts";

/** The environment variable through which revive names the bundle (workers inherit it). */
export const REVIVE_BUNDLE_ENV = "HALTPOINT_REVIVE_BUNDLE";

const dir = process.env[REVIVE_BUNDLE_ENV];
if (!dir) throw new Error(`this file is run by \`haltpoint revive BUNDLE\` only (${REVIVE_BUNDLE_ENV} is not set)`);
const bundle = readManifest(dir);
const qemu = bundle.machines.filter((m) => m.backend === "qemu");

/** The error the test failed with, as it was (name, message and stack). */
function originalError(): Error {
  const e = new Error(bundle.error?.message ?? (bundle.kind === "breakpoint" ? "debug.breakpoint() (revived)" : "failed"));
  if (bundle.error) {
    e.name = bundle.error.name;
    if (bundle.error.stack) e.stack = bundle.error.stack;
  }
  return e;
}

export default defineTest({
  name: bundle.test.name,
  nodes: Object.fromEntries(qemu.map((m) => [m.name, { ...m.options, backend: "qemu", snapshotBoot: false } satisfies NodeOptions])),
  enableDebugHook: true,
  sshBackdoor: bundle.sshBackdoor,
  async testScript(ctx) {
    const machines = qemu.map((m) => (ctx as unknown as Record<string, { start(): Promise<void> }>)[m.name]!);
    await Promise.all(machines.map((m) => m.start()));
    throw originalError();
  },
});
