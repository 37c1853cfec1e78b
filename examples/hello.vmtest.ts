import { defineTest } from "haltpoint";

export default defineTest({
  name: "hello",
  nodes: { machine: {} },
  async testScript({ machine }) {
    await machine.start();
    const out = await machine.succeed("echo hello from $(hostname)");
    if (!out.includes("hello from machine")) throw new Error(`unexpected output: ${out}`);
  },
});
