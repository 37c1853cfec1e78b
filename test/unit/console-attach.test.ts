// A console whose file comes later (machines taken ahead, worker/run-context.ts): what was
// printed before it had a file is written first, then what follows, in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsoleLog } from "../../vm/console-log.ts";

test("attachFile writes what was printed before it, then what follows; a second attach changes nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hp-console-attach-"));
  try {
    const c = new ConsoleLog();
    c.append("booted before the run\nhalf a li");
    c.attachFile(join(dir, "run", "vm.console.log"));
    c.append("ne\nprinted in the run\n");
    c.attachFile(join(dir, "other.log"));
    c.append("more\n");
    await c.close();
    assert.equal(readFileSync(join(dir, "run", "vm.console.log"), "utf8"), "booted before the run\nhalf a line\nprinted in the run\nmore\n");
    assert.throws(() => readFileSync(join(dir, "other.log")), /ENOENT/);
    assert.equal(c.contents, "booted before the run\nhalf a line\nprinted in the run\nmore\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
