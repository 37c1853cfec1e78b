// The test `haltpoint revive BUNDLE` runs (orchestrator/commands/revive.ts): the bundle's qemu
// machines, which the qemu backend loads from their saved state (QemuRuntime.revive) and
// leaves stopped, and its local machines, each a new shell in a sandbox whose directory holds
// the files the machine's directory held at the save (its processes could not be carried);
// the script then fails with the original error, so the run halts at a
// breakpoint exactly as a live one does: console, SSH sockets, ls/attach/release.
import { createHash } from "node:crypto";
import { cpSync } from "node:fs";
import { defineTest } from "../index.ts";
import { fileInBundle, readManifest, type BundleLocalMachine, type BundleQemuMachine } from "../hooks/bundles/bundle-format.ts";
import type { NodeOptions } from "../vm/types.ts";

/** The environment variable through which revive names the bundle (workers inherit it). */
export const REVIVE_BUNDLE_ENV = "HALTPOINT_REVIVE_BUNDLE";

const dir = process.env[REVIVE_BUNDLE_ENV];
if (!dir) throw new Error(`this file is run by \`haltpoint revive BUNDLE\` only (${REVIVE_BUNDLE_ENV} is not set)`);
const bundle = readManifest(dir);
if (createHash("sha256").update(bundle.raw).digest("hex") !== process.env.HALTPOINT_REVIVE_MANIFEST_SHA256) throw new Error(`${dir}/bundle.json changed after haltpoint revive checked it: not revived`);
const qemu = bundle.machines.filter((m): m is BundleQemuMachine => m.backend === "qemu");
const local = bundle.machines.filter((m): m is BundleLocalMachine => m.backend === "local");

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
  // Only what the argv builder needs from the bundle (memory, cores, NICs); orchestrator/commands/revive.ts gives the rest.
  nodes: Object.fromEntries([
    ...qemu.map((m) => [m.name, { backend: "qemu", memory: m.memoryMiB, cores: m.cores, ...(m.vlans.length ? { vlans: m.vlans } : {}), snapshotBoot: false } satisfies NodeOptions]),
    ...local.map((m) => [m.name, { backend: "local" } satisfies NodeOptions]),
  ]),
  enableDebugHook: true,
  sshBackdoor: bundle.sshBackdoor,
  async testScript(ctx) {
    const byName = ctx as unknown as Record<string, { start(): Promise<void>; dir: string }>;
    await Promise.all(bundle.machines.map((m) => byName[m.name]!.start()));
    for (const m of local) {
      if (!m.files) continue;
      // Checked by revive (a real directory of the bundle, its tree's digest); links in it are copied as links, never followed.
      const from = fileInBundle(bundle.dir, m.files.path, `machine ${m.name}'s files`, "directory").path;
      cpSync(from, byName[m.name]!.dir, { recursive: true, verbatimSymlinks: true, force: false });
    }
    throw originalError();
  },
});
