// Move files between the host and a machine.
import { defineTest } from "haltpoint";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default defineTest({
  name: "copy-files",
  nodes: { box: {} },
  async testScript({ box }) {
    const dir = mkdtempSync(join(tmpdir(), "copy-example-"));
    try {
      writeFileSync(join(dir, "config.txt"), "greeting=hi\n");

      await box.copyToMachine(join(dir, "config.txt"), "/tmp/app/config.txt");
      await box.succeed("grep -q greeting=hi /tmp/app/config.txt");

      await box.succeed("mkdir -p /tmp/report && wc -c < /tmp/app/config.txt > /tmp/report/size");
      const copied = await box.copyFromMachine("/tmp/report", dir);
      const size = readFileSync(join(copied, "size"), "utf8").trim();
      if (size !== "12") throw new Error(`expected 12 bytes, the machine counted ${size}`);
    } finally {
      rmSync(dir, { recursive: true, force: true }); // the host's scratch copy, pass or fail
    }
  },
});
