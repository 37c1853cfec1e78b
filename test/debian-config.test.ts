// Debian guests configured as a NixOS node is: `image: { packages, files, setup }` baked into
// the image, sshd with PAM on as Debian ships it, snapshots saved only once the guest is at
// rest, and the examples/nixos suite (tests ported from nixpkgs nixos/tests). One image for the
// whole file (the examples' one, ./examples/nixos/image.ts), so one build; the examples' run
// saves the shapes' snapshots and the fixture's guests restore them.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { image } from "../examples/nixos/image.ts";
import { applyNodeConfig, debianImageKey, debianSpecId } from "../vm/image/debian-image.ts";
import { haltpoint } from "./helpers/cli.ts";
import { qemuProcesses } from "./helpers/qemu.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const dir = tempDir("hp-debcfg-");
after(() => rmSync(dir, { recursive: true, force: true }));

const spec = { packages: [...image.packages].sort(), files: image.files, setup: image.setup };

test("files and setup are part of the image's key; the order of the files is not", async () => {
  const base = (await debianImageKey(spec)).key;
  const reordered = Object.fromEntries(Object.entries(spec.files).reverse());
  assert.equal((await debianImageKey({ ...spec, files: reordered })).key, base);
  assert.equal(debianSpecId({ ...spec, files: reordered }), debianSpecId(spec));
  const keys = [
    (await debianImageKey({ ...spec, setup: `${spec.setup}\necho one more line` })).key,
    (await debianImageKey({ ...spec, files: { ...spec.files, "/etc/motd": "hello\n" } })).key,
    (await debianImageKey({ ...spec, files: { ...spec.files, "/var/www/html/index.html": "other content\n" } })).key,
    (await debianImageKey({ packages: spec.packages, files: {}, setup: "" })).key,
  ];
  assert.equal(new Set([base, ...keys]).size, 5, `every change of files or setup is another image: ${[base, ...keys].join(" ")}`);
  assert.equal(debianSpecId({ packages: ["curl"], files: {}, setup: "" }), "curl", "a package list alone keeps its plain id");
  assert.match(debianSpecId(spec), /^curl,iptables,iputils-ping,nginx,redis-server\+[0-9a-f]{16}$/);
});

test("a bad image.files path is one line naming the file, the node and the path", async () => {
  const r = await haltpoint(["run", "test/fixtures/debian-config-bad", "--log-dir", join(dir, "bad")]);
  assert.equal(r.exitCode, 2, r.all);
  assert.match(r.all, /relative-path\.vmtest\.ts: node 'web': image\.files: "etc\/motd" is not absolute \(a file in the image needs an absolute path without '\.\.'\)$/m);
  assert.match(r.all, /dotdot-path\.vmtest\.ts: node 'db': image\.files: "\/etc\/\.\.\/\.\.\/host-file" has a '\.\.' in it/m);
});

test("a failing setup script is one error naming the node, with the script's output", async () => {
  // A real chroot (the host's bash and the libraries it loads) and the real code path of a
  // build's last step, without a whole Debian bootstrap.
  const root = join(dir, "chroot");
  for (const tool of ["bash", "sh", "mkdir", "dirname", "rm", "cat", "chmod"]) {
    const path = (await execa("bash", ["-c", `command -v ${tool}`])).stdout.trim();
    const libs = (await execa("ldd", [path], { reject: false })).stdout.match(/\/\S+/g) ?? [];
    for (const f of [path, ...libs]) {
      mkdirSync(join(root, f, ".."), { recursive: true });
      await execa("cp", ["-L", f, join(root, f)]);
    }
    mkdirSync(join(root, "bin"), { recursive: true });
    if (!path.startsWith("/bin/")) await execa("cp", ["-L", path, join(root, "bin", tool)]);
  }
  const setup = "echo configuring the web server\necho 'no such user: www' >&2\nexit 3\necho never here\n";
  const err = await applyNodeConfig(root, { packages: [], files: { "/etc/hp-made-here": "yes\n" }, setup }, "examples/x.vmtest.ts: node 'web'", () => {}).then(
    () => undefined,
    (e: Error) => e,
  );
  assert.ok(err, "the setup failed");
  assert.equal(
    err.message,
    "haltpoint image: examples/x.vmtest.ts: node 'web': image.setup failed (exit status 3) in the image's chroot; its output:\n  | configuring the web server\n  | no such user: www",
  );
  assert.equal(readFileSync(join(root, "etc", "hp-made-here"), "utf8"), "yes\n", "the files were written before the script ran");
});

test("the examples ported from nixpkgs nixos/tests pass; a restored guest has its late service listening, a useradd user logs in by key", async () => {
  // Default flags: nixos-nat's three guests are admitted on a 2-core host (--cpu-overcommit).
  const suite = await haltpoint(["run", "examples/nixos", "--log-dir", join(dir, "nixos"), "--json", join(dir, "nixos.json")], { timeout: 1_500_000 });
  assert.equal(suite.exitCode, 0, suite.all);
  const report = JSON.parse(readFileSync(join(dir, "nixos.json"), "utf8"));
  const names = report.tests.map((t: { name: string }) => t.name).sort();
  assert.deepEqual(names, ["nixos-login", "nixos-nat", "nixos-nginx", "nixos-openssh", "nixos-redis", "nixos-simple"]);
  assert.equal(report.summary.passed, 6, suite.all);
  // A shape is saved once its guest is at rest. With snapshots cached by an earlier run every
  // guest restores instead (the at-rest rule is part of the snapshot key, so snapshots saved
  // under another rule are never used); a guest that booted cold must have saved at rest.
  const coldBoots = (suite.all.match(/starting qemu \([^)]*cold boot\)/g) ?? []).length;
  const restores = (suite.all.match(/starting qemu \([^)]*from snapshot/g) ?? []).length;
  assert.equal(coldBoots + restores, 9, `nine guests in the six tests, each booted cold or restored:\n${suite.all}`);
  if (coldBoots) assert.match(suite.all, /guest at rest after \d+ ms/, "a shape was saved once its guest was at rest");

  const r = await haltpoint(["run", "test/fixtures/debian-config", "--log-dir", join(dir, "config")], { timeout: 900_000 });
  assert.equal(r.exitCode, 0, r.all);
  const f: Record<string, unknown> = Object.assign({}, ...[...r.all.matchAll(/FACT (\{.*\})/g)].map((m) => JSON.parse(m[1]!)));
  assert.equal((r.all.match(/starting qemu \([^)]*from snapshot/g) ?? []).length, 2, `both guests restored:\n${r.all}`);
  assert.equal(f.alphaLateListening, 0, "the late Type=simple service listens at the first command of a restored guest");
  assert.equal(f.betaLateListening, 0);
  assert.equal(f.indexHtml, "initial content\n", "image.files are in the image");
  assert.equal(f.natUnitMode, "644");
  assert.equal(f.memberGroups, "member redis", "image.setup ran (useradd --groups redis member)");
  assert.equal(f.lateEnabled, "enabled", "image.setup ran (systemctl enable)");
  assert.equal(f.usePam, "usepam yes", "sshd runs with PAM, as Debian ships it");
  assert.equal(f.rootSsh, "beta", "root logs in over SSH with no password and no key");
  assert.equal(f.carolLocked, "L", "a useradd user has no password: the account is locked");
  assert.deepEqual(f.carolSsh, { status: 0, out: "carol\nbeta" }, "…and still logs in by key");
  assert.deepEqual(await qemuProcesses(), [], "no qemu process left behind");
});
