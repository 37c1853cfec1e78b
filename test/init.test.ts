// `npx haltpoint init` in fresh projects made by `npm init -y` (CommonJS) and with
// "type": "module" (ESM), haltpoint installed from its real `npm pack` tarball: the files it
// writes, the ones it leaves alone (and says so), its first `npx haltpoint run` passing, and its
// questions on a real pseudo-terminal (`script`).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { BIN } from "./helpers/cli.ts";
import { freshProject, inProject, packHaltpoint } from "./helpers/packed.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

describe("haltpoint init, from the npm pack tarball", () => {
  let base: string;
  let tarball: string;
  before(async () => {
    base = tempDir("hp-init-", "/var/tmp");
    tarball = await packHaltpoint(base);
    // Both projects install at once (the installs wait mostly on the network and the disk).
    mkdirSync(join(base, "cjs"));
    mkdirSync(join(base, "esm"));
    await Promise.all([freshProject(join(base, "cjs"), tarball), freshProject(join(base, "esm"), tarball, { esm: true })]);
  });
  after(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test("CommonJS project, no terminal: takes the defaults and says so, writes every file, and its printed commands pass", async () => {
    const dir = join(base, "cjs");
    assert.equal(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).type ?? "commonjs", "commonjs");
    const init = await inProject(dir, "npx", ["haltpoint", "init"]);
    assert.equal(init.exitCode, 0, init.all);
    assert.match(init.all!, /no terminal to ask on: taking the defaults \(--backend local --ci github/);
    for (const f of ["haltpoint.config.json", "tests/hello.vmtest.ts", ".github/workflows/haltpoint.yml", ".gitignore"]) {
      assert.match(init.all!, new RegExp(`^  wrote +${f.replace(/\./g, "\\.")}$`, "m"), init.all);
      assert.ok(existsSync(join(dir, f)), f);
    }
    assert.equal(readFileSync(join(dir, ".gitignore"), "utf8"), ".haltpoint/\n");
    assert.equal(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).scripts["test:vm"], "haltpoint run");
    const workflow = readFileSync(join(dir, ".github/workflows/haltpoint.yml"), "utf8");
    assert.match(workflow, /npx haltpoint run --profile ci --shard \$\{\{ matrix\.shard \}\}\/2 .*--json shard-/);
    assert.match(workflow, /npx haltpoint merge shard-\*\.json --junit all\.xml --json all\.json/);
    // The commands it printed, as printed (the part before the comment), and the script it added.
    const printed = [...init.all!.matchAll(/^ {2}(npx haltpoint run)(?: {2,}#.*)?$/gm)].map((m) => m[1]!);
    assert.deepEqual(printed, ["npx haltpoint run"], init.all);
    const run = await inProject(dir, "sh", ["-c", printed[0]!]);
    assert.equal(run.exitCode, 0, run.all);
    assert.match(run.all!, /^hello#1: PASS/m);
    assert.match(run.all!, /1 passed, 0 failed/);
    // The script it added, with the workflow's flags: both shards, then the merge the workflow runs.
    const shard1 = await inProject(dir, "npm", ["run", "test:vm", "--", "--profile", "ci", "--shard", "1/2", "--pass-with-no-tests", "--json", "shard-1.json"]);
    assert.equal(shard1.exitCode, 0, shard1.all);
    const shard2 = await inProject(dir, "npx", ["haltpoint", "run", "--profile", "ci", "--shard", "2/2", "--pass-with-no-tests", "--json", "shard-2.json"]);
    assert.equal(shard2.exitCode, 0, shard2.all);
    const merge = await inProject(dir, "sh", ["-c", "npx haltpoint merge shard-*.json --junit all.xml --json all.json"]);
    assert.equal(merge.exitCode, 0, merge.all);
    assert.match(merge.all!, /1 passed, 0 failed/);
  });

  test("ESM project with files of its own: leaves them alone (and says which), appends to .gitignore, and its test passes", async () => {
    const dir = join(base, "esm");
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    writeFileSync(join(dir, "package.json"), `${JSON.stringify({ ...pkg, scripts: { ...pkg.scripts, "test:vm": "echo mine" } }, null, 2)}\n`);
    writeFileSync(join(dir, ".gitignore"), "node_modules"); // no final newline
    mkdirSync(join(dir, ".github/workflows"), { recursive: true });
    writeFileSync(join(dir, ".github/workflows/haltpoint.yml"), "# mine\n");
    const init = await inProject(dir, "npx", ["haltpoint", "init", "--yes", "--ci", "github", "--backend", "local"]);
    assert.equal(init.exitCode, 0, init.all);
    assert.doesNotMatch(init.all!, /no terminal/, "--yes asks nothing and needs no note");
    assert.match(init.all!, /^ {2}left alone \.github\/workflows\/haltpoint\.yml: it exists$/m, init.all);
    assert.match(init.all!, /^ {2}left alone package\.json: it has a "test:vm" script already$/m);
    assert.match(init.all!, /^ {2}appended +\.gitignore/m);
    assert.equal(readFileSync(join(dir, ".github/workflows/haltpoint.yml"), "utf8"), "# mine\n");
    assert.equal(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).scripts["test:vm"], "echo mine");
    assert.equal(readFileSync(join(dir, ".gitignore"), "utf8"), "node_modules\n.haltpoint/\n");
    assert.equal(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).type, "module");
    const run = await inProject(dir, "npx", ["haltpoint", "run"]);
    assert.equal(run.exitCode, 0, run.all);
    assert.match(run.all!, /^hello#1: PASS/m);
    // A second init changes nothing and says so for every file.
    const again = await inProject(dir, "npx", ["haltpoint", "init", "--yes"]);
    assert.equal(again.exitCode, 0, again.all);
    assert.equal((again.all!.match(/^ {2}left alone /gm) ?? []).length, 5, again.all);
    assert.doesNotMatch(again.all!, /^ {2}(wrote|appended|added) /m);
  });

  test("on a terminal it asks (a real pty): the answers choose the backend and the CI", async () => {
    const dir = join(base, "asked");
    mkdirSync(dir);
    writeFileSync(join(dir, "package.json"), `${JSON.stringify({ name: "asked", version: "1.0.0", devDependencies: { haltpoint: "*" } }, null, 2)}\n`);
    // script(1) gives the command a pseudo-terminal and copies our stdin to it: both answers are
    // in the pty before the first question (a paste): each must reach its own question.
    const r = await execa("script", ["-qec", `node ${BIN} init`, "/dev/null"], { cwd: dir, input: "qemu\ngitlab\n", reject: false, all: true, timeout: 120_000, env: { NO_COLOR: "1", TERM: "dumb" } });
    assert.equal(r.exitCode, 0, r.all);
    assert.match(r.all!, /Backend of the first test: .*\(local, qemu, debian\) \[local\]:/);
    assert.match(r.all!, /CI workflow \(github, gitlab, none\) \[github\]:/);
    assert.match(readFileSync(join(dir, "tests/hello.vmtest.ts"), "utf8"), /backend: "qemu"/);
    assert.equal(JSON.parse(readFileSync(join(dir, "haltpoint.config.json"), "utf8")).backend, "qemu");
    assert.match(readFileSync(join(dir, ".gitlab-ci.yml"), "utf8"), /--shard auto/);
    assert.ok(!existsSync(join(dir, ".github")), "no GitHub workflow when GitLab was chosen");
  });
});
