import { defineTest } from "haltpoint";
import { image } from "./image.ts";

// Ported from nixpkgs nixos/tests/login.nix: switching virtual consoles, a real login typed on
// the keyboard, logging out, and ctrl-alt-delete.
//
// Differences from the original:
// - a Debian 12 guest from the shared image (./image.ts); the user is made by the test script
//   as in the original (useradd, then a password, here with chpasswd instead of passwd), with
//   `-s /bin/bash`: Debian's useradd gives /bin/sh, NixOS's users get bash;
// - Debian's agetty is given its tty as stdin, not as an argument: `pgrep -t tty1 agetty`
//   instead of `pgrep -f 'agetty.*tty1'`; logind starts autovt@tty2.service on the switch
//   (NixOS: getty@tty2.service);
// - the active console is read from /sys/class/tty/tty0/active (`fgconsole` is in Debian's
//   kbd package, not in the image);
// - left out: "device permissions" (the guest has no sound card, so no /dev/snd/timer whose
//   ACL logind moves) and the screenshots;
// - ctrl-alt-delete reboots a Debian guest (ctrl-alt-del.target is reboot.target, as on
//   NixOS); haltpoint's QEMU runs with -no-reboot unless `allowReboot`, so the machine stops,
//   which waitForShutdown() sees, as the original's wait_for_shutdown.
export default defineTest({
  name: "nixos-login",
  nodes: { machine: { image } },
  globalTimeout: 600,
  async testScript({ machine, startAll, subtest }) {
    await startAll();
    await machine.waitForUnit("multi-user.target");
    await machine.waitUntilSucceeds("pgrep -t tty1 agetty");

    await subtest("create user", async () => {
      await machine.succeed("useradd -m -s /bin/bash alice");
      await machine.succeed("echo alice:foobar | chpasswd");
    });

    await subtest("virtual console switching", async () => {
      await machine.fail("pgrep -t tty2 agetty");
      await machine.sendKey("alt-f2");
      await machine.waitUntilSucceeds("[ $(cat /sys/class/tty/tty0/active) = tty2 ]");
      await machine.waitForUnit("autovt@tty2.service");
      await machine.waitUntilSucceeds("pgrep -t tty2 agetty");
    });

    await subtest("virtual console login", async () => {
      await machine.waitUntilTtyMatches(2, "login: ");
      await machine.sendChars("alice\n");
      await machine.waitUntilTtyMatches(2, "login: alice");
      await machine.waitUntilSucceeds("pgrep login");
      await machine.waitUntilTtyMatches(2, "Password: ");
      await machine.sendChars("foobar\n");
      await machine.waitUntilSucceeds("pgrep -u alice bash");
      await machine.sendChars("touch done\n");
      await machine.waitForFile("/home/alice/done");
    });

    await subtest("virtual console logout", async () => {
      await machine.sendChars("exit\n");
      await machine.waitUntilFails("pgrep -u alice bash");
    });

    await subtest("ctrl-alt-delete", async () => {
      await machine.sendKey("ctrl-alt-delete");
      await machine.waitForShutdown();
    });
  },
});
