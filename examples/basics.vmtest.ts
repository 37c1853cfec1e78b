// The Machine API's everyday calls: run commands, check their status and output.
// Runs on any backend: `haltpoint run examples` (local) or `--backend qemu`.
import { defineTest } from "haltpoint";

export default defineTest({
  name: "basics",
  nodes: { machine: {} },
  async testScript({ machine, log }) {
    await machine.start();

    // succeed() returns stdout and throws if the command exits non-zero.
    const greeting = await machine.succeed("echo hello from $(hostname)");
    log(`the machine says: ${greeting.trim()}`);

    // fail() is the opposite: the command must exit non-zero.
    await machine.fail("test -e /no/such/file");

    // execute() never throws on a status: it returns it, with stdout.
    const { status, stdout } = await machine.execute("echo partial; exit 3");
    if (status !== 3 || stdout !== "partial\n") throw new Error(`unexpected result ${status} ${JSON.stringify(stdout)}`);

    // Binary output comes back byte for byte.
    const bytes = await machine.execute("printf 'a\\0b'", { encoding: "buffer" });
    if (bytes.stdout.length !== 3 || bytes.stdout[1] !== 0) throw new Error("binary output was mangled");
  },
});
