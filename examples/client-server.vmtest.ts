// Two machines: a server and a client talking over TCP. Local machines share the host's
// network, so the server picks a free port and the test passes it on.
import { defineTest } from "haltpoint";

export default defineTest({
  name: "client-server",
  nodes: {
    server: { backend: "local" },
    client: { backend: "local" },
  },
  async testScript({ server, client, subtest }) {
    await Promise.all([server.start(), client.start()]);

    const script =
      "const s=require('http').createServer((q,r)=>r.end('hello '+q.url));" +
      "s.listen(0,'127.0.0.1',()=>require('fs').writeFileSync('port',String(s.address().port)))";
    await server.succeed(`(node -e "${script}" >/dev/null 2>&1 &)`);
    await server.waitForFile("port", { timeout: 30 });
    const port = Number((await server.succeed("cat port")).trim());
    await server.waitForOpenPort(port, { timeout: 30 });

    await subtest("client fetches from server", async () => {
      const reply = await client.succeed(
        `exec 3<>/dev/tcp/127.0.0.1/${port}; printf 'GET /from-client HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3`,
      );
      if (!reply.includes("hello /from-client")) throw new Error(`unexpected reply: ${reply}`);
    });

    await subtest("server stops, the port closes", async () => {
      await server.succeed("pkill -f 'createServer' || true");
      await client.waitForClosedPort(port, { timeout: 30 });
    });
  },
});
