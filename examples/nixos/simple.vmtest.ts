import { defineTest } from "haltpoint";
import { image } from "./image.ts";

// Ported from nixpkgs nixos/tests/simple.nix: one machine boots to multi-user.target and
// shuts down cleanly.
//
// Differences from the original:
// - the machine is a Debian 12 guest from the suite's shared image (./image.ts), not a NixOS
//   system with profiles/minimal.nix;
// - start_all() is startAll(), wait_for_unit() is waitForUnit(), shutdown() is shutdown().
export default defineTest({
  name: "nixos-simple",
  nodes: { machine: { image } },
  globalTimeout: 600,
  async testScript({ machine, startAll }) {
    await startAll();
    await machine.waitForUnit("multi-user.target");
    await machine.shutdown();
  },
});
