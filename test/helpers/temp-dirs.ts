import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Scratch directories of a test file, removed when its process exits (passed or failed), so
// a test run leaves no hp-* directory behind (.ci/run fails on any it finds afterwards).
const made = new Set<string>();
process.on("exit", () => {
  for (const dir of made) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      process.stderr.write(`test: cannot remove ${dir}: ${(e as Error).message}\n`);
    }
  }
});

/**
 * A fresh directory (e.g. `hp-sched-XXXXXX`) under the system's temp dir, or under `base`
 * (`/var/tmp` where a test needs a real disk, not a private /tmp), removed at exit.
 */
export function tempDir(prefix: string, base = tmpdir()): string {
  const dir = mkdtempSync(join(base, prefix));
  made.add(dir);
  return dir;
}
