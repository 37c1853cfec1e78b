import { defineTest } from "haltpoint";
import { image } from "./image.ts";

// Ported from nixpkgs nixos/tests/redis.nix: a Redis server with a unix socket that the
// members of the redis group may use.
//
// Differences from the original:
// - services.redis.servers."" and users.users.member are in the shared image (./image.ts):
//   Debian's redis-server package, its redis.conf given `unixsocket` and `unixsocketperm 770`
//   by the image's setup script, and `useradd --groups redis member`;
// - one server: the original's second server (servers."test") is left out (Debian runs more
//   instances through redis-server@NAME.service with a config file each);
// - Debian names the unit redis-server.service and the socket /run/redis/redis-server.sock
//   (NixOS: redis.service, /run/redis/redis.sock);
// - added: the member pings through the socket itself (the original's member pings over TCP,
//   which the group does not guard), and a user outside the group is refused by the socket.
const SOCKET = "/run/redis/redis-server.sock";

export default defineTest({
  name: "nixos-redis",
  nodes: { machine: { image } },
  globalTimeout: 600,
  async testScript({ machine, startAll }) {
    await startAll();
    await machine.waitForUnit("redis-server.service");
    // The server still opens its TCP port.
    await machine.waitForOpenPort(6379);
    await machine.waitForFile(SOCKET);
    // The unix socket is open to the redis group.
    await machine.succeed('su member -c "redis-cli ping | grep PONG"');
    await machine.succeed(`su member -c "redis-cli -s ${SOCKET} ping | grep PONG"`);
    await machine.succeed("redis-cli ping | grep PONG");
    await machine.succeed(`redis-cli -s ${SOCKET} ping | grep PONG`);
    // …and to nobody else.
    await machine.succeed("useradd --no-create-home outsider");
    await machine.fail(`su outsider -c "redis-cli -s ${SOCKET} ping | grep PONG"`);
  },
});
