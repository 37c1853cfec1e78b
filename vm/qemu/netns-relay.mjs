// The byte relay inside a QEMU's private network namespace (see netns-relay.ts): it listens on
// a UNIX socket (argv[2], 0600; UNIX socket paths are not per network namespace, so the worker
// outside reaches it) and pipes each connection to 127.0.0.1:<port> inside the namespace, where
// QEMU's user-network forwards listen and no other user's process can connect.
//
// Per connection: the client sends "<port>\n"; once 127.0.0.1:<port> accepted, the relay
// answers "<its local port>\n" (the worker finds QEMU's end of it in /proc) and then bytes flow
// both ways, half-closes included. A connection that fails is closed without an answer.
// Plain JavaScript: it runs as its own node process, from the sources and from dist/ alike.
import { chmodSync } from "node:fs";
import { connect, createServer } from "node:net";

const path = process.argv[2];
if (!path) {
  process.stderr.write("netns-relay: usage: node netns-relay.mjs SOCKET_PATH\n");
  process.exit(2);
}
process.umask(0o077);

const server = createServer({ allowHalfOpen: true }, (client) => {
  let head = Buffer.alloc(0);
  client.on("error", () => client.destroy());
  const onHead = (chunk) => {
    head = Buffer.concat([head, chunk]);
    const nl = head.indexOf(10);
    if (nl < 0) {
      if (head.length > 16) client.destroy();
      return;
    }
    client.off("data", onHead);
    client.pause();
    const port = Number(head.subarray(0, nl).toString());
    const rest = head.subarray(nl + 1);
    if (!Number.isInteger(port) || port < 1 || port > 65535) return void client.destroy();
    const up = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    up.once("error", () => client.destroy());
    up.once("connect", () => {
      up.removeAllListeners("error");
      up.on("error", () => client.destroy());
      client.on("error", () => up.destroy());
      client.write(`${up.localPort}\n`);
      if (rest.length) up.write(rest);
      // pipe() ends the other side when one side ends: a half-close passes through.
      client.pipe(up);
      up.pipe(client);
      client.once("close", () => up.destroy());
      up.once("close", () => {
        if (!client.writableEnded) client.end();
        client.once("finish", () => client.destroy());
        if (client.writableFinished) client.destroy();
      });
      client.resume();
    });
  };
  client.on("data", onHead);
});
// umask first: the socket is never, even for an instant, connectable by others.
server.listen(path, () => {
  chmodSync(path, 0o600);
  process.stdout.write("ready\n");
});
server.on("error", (e) => {
  process.stderr.write(`netns-relay: ${path}: ${e.message}\n`);
  process.exit(1);
});
// The worker that started us holds our stdin: when it is gone, so are we.
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
