// Two real VMs on their own virtual network: the client reaches the server by name.
// Needs QEMU (bash .ci/setup installs it); the guest image is built on first use.
import { defineTest } from "haltpoint";

export default defineTest({
  name: "qemu-network",
  nodes: {
    server: { backend: "qemu", memory: 256 },
    client: { backend: "qemu", memory: 256 },
  },
  globalTimeout: 300,
  async testScript({ server, client, startAll, subtest }) {
    await startAll();

    await subtest("the server serves HTTP", async () => {
      await server.succeed("mkdir -p /srv && echo 'hello from the server' > /srv/index.html");
      await server.succeed("httpd -p 80 -h /srv");
      await server.waitForOpenPort(80);
    });

    await subtest("the client fetches it by the server's name", async () => {
      const page = await client.succeed("wget -q -O - http://server/index.html");
      if (page.trim() !== "hello from the server") throw new Error(`unexpected page: ${page}`);
    });

    await subtest("a blocked link stops the traffic", async () => {
      await server.block();
      // (busybox wget -T crashes: bound the wait with timeout instead)
      await client.fail("timeout 3 wget -q -O - http://server/index.html");
      await server.unblock();
      await client.waitUntilSucceeds("timeout 3 wget -q -O - http://server/index.html", { timeout: 60 });
    });
  },
});
