import { defineTest } from "haltpoint";
import { image } from "./image.ts";

// Ported from nixpkgs nixos/tests/openssh.nix (its "manual-authkey" and "allowed-users"
// subtests): key-based SSH from one guest to another, as root and as users made in the test.
//
// Differences from the original:
// - two Debian 12 guests from the shared image (./image.ts); Debian's sshd (ssh.service; NixOS:
//   sshd.service) with PAM on, as Debian ships it; users are made by `useradd` in the test
//   script and their authorized_keys written there (NixOS: users.users.*.openssh.authorizedKeys);
// - the key pairs are made in the test (NixOS's snakeoil keys are fixed files);
// - AllowUsers is a sshd_config.d drop-in and a reload (NixOS: services.openssh.settings on a
//   server of its own); the original's other servers (lazy/socket-activated, localhost-only,
//   match rules, no-openssl, null algorithms, no-pam, sftp, keygen without sshd) and the
//   memlock limit check are left out.
const SSH = "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o BatchMode=yes";

export default defineTest({
  name: "nixos-openssh",
  nodes: { server: { image }, client: { image } },
  globalTimeout: 600,
  async testScript({ server, client, startAll, subtest }) {
    await startAll();
    await server.waitForUnit("ssh.service", { timeout: 60 });

    await subtest("manual-authkey", async () => {
      await client.succeed('ssh-keygen -t ed25519 -f /root/.ssh/id_ed25519 -N ""');
      const publicKey = (await client.succeed("ssh-keygen -y -f /root/.ssh/id_ed25519")).trim();
      await client.succeed("chmod 600 /root/.ssh/id_ed25519");
      await server.succeed(`echo '${publicKey}' > /root/.ssh/authorized_keys`);
      await client.waitForUnit("network.target");
      await client.succeed(`${SSH} server 'echo hello world' >&2`, { timeout: 30 });
    });

    await subtest("a user made with useradd logs in with a key", async () => {
      for (const m of [server, client]) await m.succeed("useradd --create-home --shell /bin/bash alice");
      await client.succeed(`su alice -c 'ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519 -N ""'`);
      const publicKey = (await client.succeed("cat /home/alice/.ssh/id_ed25519.pub")).trim();
      await server.succeed(`install -d -m 700 -o alice -g alice /home/alice/.ssh && echo '${publicKey}' > /home/alice/.ssh/authorized_keys && chown alice: /home/alice/.ssh/authorized_keys`);
      const who = await client.succeed(`su alice -c "${SSH} alice@server 'id -un; hostname'"`, { timeout: 30 });
      if (who.trim() !== "alice\nserver") throw new Error(`expected alice on server, got ${JSON.stringify(who)}`);
    });

    await subtest("allowed-users", async () => {
      for (const m of [server, client]) await m.succeed("useradd --create-home --shell /bin/bash bob");
      await server.succeed("install -d -m 700 -o bob -g bob /home/bob/.ssh && cp /home/alice/.ssh/authorized_keys /home/bob/.ssh/ && chown bob: /home/bob/.ssh/authorized_keys");
      await client.succeed("install -d -m 700 -o bob -g bob /home/bob/.ssh && cp /home/alice/.ssh/id_ed25519 /home/bob/.ssh/ && chown bob: /home/bob/.ssh/id_ed25519");
      await client.succeed(`su bob -c "${SSH} bob@server true"`, { timeout: 30 });
      await server.succeed("echo 'AllowUsers root alice' > /etc/ssh/sshd_config.d/allowed.conf && systemctl reload ssh");
      await client.succeed(`su alice -c "${SSH} alice@server true"`, { timeout: 30 });
      await client.fail(`su bob -c "${SSH} bob@server true"`, { timeout: 30 });
    });
  },
});
