import { defineTest } from "haltpoint";

// Two Debian 12 guests with systemd as PID 1, built from Debian packages: lighttpd runs on the
// server because Debian enables it when it is installed; the client reaches it by the server's
// name. The first run builds the image (as root, about a minute; `haltpoint image build --debian
// lighttpd,curl` builds it ahead) and boots one guest cold; every later machine of the same
// shape starts from its snapshot in about 2 s.
const image = { packages: ["lighttpd", "curl"] };

export default defineTest({
  name: "debian-services",
  // A node with an image is a qemu guest: no backend needed.
  nodes: { server: { image }, client: { image } },
  globalTimeout: 600,
  async testScript({ server, client, startAll, subtest }) {
    await startAll();
    await subtest("the server's lighttpd is up", async () => {
      await server.waitForUnit("multi-user.target");
      await server.waitForUnit("lighttpd.service");
      await server.waitForOpenPort(80); // active (Type=simple) comes just before it listens
      await server.succeed("echo 'hello from a Debian guest' > /var/www/html/index.html");
    });
    await subtest("the client fetches the page by the server's name", async () => {
      const page = await client.succeed("curl -sf http://server/index.html");
      if (page.trim() !== "hello from a Debian guest") throw new Error(`unexpected page: ${page}`);
    });
    await subtest("stopped, the service refuses; started again, it serves", async () => {
      await server.stopJob("lighttpd.service");
      await server.requireUnitState("lighttpd.service", "inactive");
      await client.fail("curl -sf http://server/index.html");
      await server.startJob("lighttpd.service");
      await server.waitForUnit("lighttpd.service");
      await server.waitForOpenPort(80);
      await client.succeed("curl -sf http://server/index.html");
    });
  },
});
