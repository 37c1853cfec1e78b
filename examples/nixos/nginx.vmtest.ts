import { defineTest } from "haltpoint";
import { image } from "./image.ts";

// Ported from nixpkgs nixos/tests/nginx.nix: the ETag of a served file follows its content,
// a configuration change is applied by a reload (nginx is never stopped: its main process
// stays), and a configuration with errors is refused while nginx keeps serving.
//
// Differences from the original:
// - services.nginx is Debian's nginx package in the shared image (./image.ts), serving
//   /var/www/html, whose index.html the image's files hold ("initial content");
// - each new configuration is written by the test script and applied with `systemctl reload
//   nginx`, where the original switches to a prepared NixOS configuration
//   (switch-to-configuration test); Debian's reload runs `nginx -t` first, the part of
//   NixOS's nginx-config-reload unit that refuses a bad configuration;
// - the ETag changes because the file's content (and mtime) changes, not because a new Nix
//   store path is served;
// - added: the unit's MainPID is the same before and after the reload;
// - left out: "restart when nginx package changes" (a Debian image has one nginx package).
const url = "http://localhost/index.html";

export default defineTest({
  name: "nixos-nginx",
  nodes: { webserver: { image } },
  globalTimeout: 600,
  async testScript({ webserver, startAll, subtest }) {
    const checkEtag = async (): Promise<string> => {
      const etag = (await webserver.succeed(`curl -v ${url} 2>&1 | sed -n -e "s/^< etag: *//ip"`)).trim();
      const code = await webserver.succeed(`curl -w '%{http_code}' --head --fail -H 'If-None-Match: ${etag}' ${url}`);
      if (code.trim().split("\n").at(-1) !== "304") throw new Error(`expected 304 for the ETag ${etag}, got ${code}`);
      return etag;
    };
    await startAll();
    await webserver.waitForUnit("multi-user.target");
    await webserver.waitForUnit("nginx");
    await webserver.waitForOpenPort(80);

    await subtest("check ETag if serving changed content", async () => {
      const oldEtag = await checkEtag();
      await webserver.succeed("sleep 1; echo changed content > /var/www/html/index.html");
      const newEtag = await checkEtag();
      if (oldEtag === newEtag) throw new Error(`the ETag ${oldEtag} did not change`);
    });

    await subtest("config is reloaded, nginx is not restarted", async () => {
      const pid = await webserver.getUnitProperty("nginx.service", "MainPID");
      await webserver.succeed("sed -i 's/listen 80 default_server;/listen 80 default_server;\\n\\tlisten 8080;/' /etc/nginx/sites-enabled/default");
      await webserver.succeed("systemctl reload nginx");
      await webserver.waitForOpenPort(8080);
      await webserver.fail("journalctl -u nginx | grep -q -i stopped");
      await webserver.succeed("journalctl -u nginx | grep -q -i reloaded");
      const after = await webserver.getUnitProperty("nginx.service", "MainPID");
      if (after !== pid) throw new Error(`the reload replaced nginx's main process (MainPID ${pid} → ${after})`);
    });

    await subtest("a configuration with errors is refused, nginx keeps serving", async () => {
      await webserver.succeed("echo 'this is not nginx configuration;' > /etc/nginx/conf.d/broken.conf");
      await webserver.fail("systemctl reload nginx");
      await webserver.succeed("[[ $(systemctl is-active nginx) == active ]]");
      await webserver.succeed(`curl --fail ${url}`);
    });
  },
});
