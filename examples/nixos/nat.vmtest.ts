import { defineTest } from "haltpoint";
import { image } from "./image.ts";

// Ported from nixpkgs nixos/tests/nat.nix (natStandalone): a client on the inside network
// (vlan 1), a server on the outside one (vlan 2), and a router on both that masquerades the
// client's traffic; turning NAT off cuts the client off, turning it on again restores it.
//
// Differences from the original:
// - three Debian 12 guests from the shared image (./image.ts); services.httpd is Debian's
//   nginx (enabled by its package); networking.nat is nat.service in the image (sysctl
//   ip_forward and an iptables MASQUERADE rule), which the test starts on the router, since
//   the image is shared and only the router enables it (NixOS: networking.nat.enable on the
//   router only); switching NAT off and on is `systemctl stop/start nat`, where the original
//   switches to a prepared configuration without NAT (routerDummyNoNat) and back;
// - the client's route to the outside network through the router is set by the test script
//   (NixOS: networking.defaultGateway); its default route stays on QEMU's user network;
// - addresses: haltpoint gives 192.168.<vlan>.<node number> by node order (client 1, router 2,
//   server 3); the router's eth1 is on vlan 2 (the outside) and eth2 on vlan 1, as in the
//   original's `vlans = [ 2 1 ]`;
// - left out: the FTP subtests (no vsftpd in the image) and the firewall variant.
//
// Three guests with one core each: a 2-core host admits them with the default
// --cpu-overcommit 2 (docs/admission.md).
export default defineTest({
  name: "nixos-nat",
  nodes: {
    client: { image, vlans: [1] },
    router: { image, vlans: [2, 1] },
    server: { image, vlans: [2] },
  },
  globalTimeout: 900,
  async testScript({ client, router, server, startAll }) {
    await startAll();

    // The router should have access to the server.
    await server.waitForUnit("network.target");
    await server.waitForUnit("nginx");
    await router.waitForUnit("network.target");
    await router.succeed("curl --fail http://server/ >&2");

    // The client should be also able to connect via the NAT router.
    await router.succeed("systemctl start nat.service");
    await router.waitForUnit("nat");
    await client.waitForUnit("network.target");
    await client.succeed("ip route replace 192.168.2.0/24 via 192.168.1.2");
    await client.succeed("curl --fail http://server/ >&2");
    await client.succeed("ping -c 1 server >&2");

    // Test ICMP.
    await client.succeed("ping -c 1 router >&2");
    await router.succeed("ping -c 1 client >&2");

    // If we turn off NAT, the client shouldn't be able to reach the server.
    await router.succeed("systemctl stop nat.service");
    await client.fail("curl --fail --connect-timeout 5 http://server/ >&2");
    await client.fail("ping -c 1 -W 2 server >&2");

    // And make sure that restarting the NAT job works.
    await router.succeed("systemctl start nat.service");
    await client.succeed("curl --fail http://server/ >&2");
    await client.succeed("ping -c 1 server >&2");
  },
});
