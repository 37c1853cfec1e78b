import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";

/** A bench's scratch directory under `root`: removed when the bench exits, a failed one included. */
export function scratchDir(prefix: string, root = "/var/tmp"): string {
  const dir = mkdtempSync(join(root, prefix));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
