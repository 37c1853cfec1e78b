// haltpoint as a dependency of someone else's project: the real `npm pack` tarball, installed
// into a fresh `npm init -y` project (CommonJS, as npm makes it), type-checked with a plain
// strict tsconfig and run with `npx haltpoint run` — as root and as an unprivileged user.
// Local machines only: what is tested is the package, not a backend.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { ROOT } from "./helpers/cli.ts";
import { tempDir } from "./helpers/temp-dirs.ts";
import { packHaltpoint } from "./helpers/packed.ts";

const NOBODY = 65534;
const TSC = join(ROOT, "node_modules/.bin/tsc");
/** PATH with node and the system's tools, and no haltpoint (nor node_modules/.bin). */
const PLAIN_PATH = `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`;

/** One test per way to write a test file: extension × import/require, each checking its hostname. */
const HOSTNAME_CHECK = `if ((await server.succeed("hostname")).trim() !== "server") throw new Error("hostname is not server");`;
const TEST_FILES: Record<string, string> = {
  "web.vmtest.ts": `import { defineTest, MachineError } from "haltpoint";

export default defineTest({
  nodes: { server: { backend: "local" } },
  async testScript({ server }) {
    await server.succeed("echo hello > greeting");
    const greeting: string = await server.succeed("cat greeting");
    if (greeting.trim() !== "hello") throw new Error(\`got \${greeting}\`);
    ${HOSTNAME_CHECK}
    try {
      await server.succeed("exit 3");
    } catch (e) {
      if (e instanceof MachineError) return;
    }
    throw new Error("a failed command did not throw this file's MachineError");
  },
});
`,
  "esm-mts.vmtest.mts": `import { defineTest } from "haltpoint";
export default defineTest({ nodes: { server: { backend: "local" } }, async testScript({ server }) { ${HOSTNAME_CHECK} } });
`,
  "imports-cts.vmtest.cts": `import { defineTest } from "haltpoint";
export default defineTest({ nodes: { server: { backend: "local" } }, async testScript({ server }) { ${HOSTNAME_CHECK} } });
`,
  "required-js.vmtest.js": `const { defineTest } = require("haltpoint");
module.exports = defineTest({ nodes: { server: { backend: "local" } }, async testScript({ server }) { ${HOSTNAME_CHECK} } });
`,
  "imports-js.vmtest.js": `import { defineTest } from "haltpoint";
export default defineTest({ nodes: { server: { backend: "local" } }, async testScript({ server }) { ${HOSTNAME_CHECK} } });
`,
  "esm-mjs.vmtest.mjs": `import { defineTest } from "haltpoint";
export default defineTest({ nodes: { server: { backend: "local" } }, async testScript({ server }) { ${HOSTNAME_CHECK} } });
`,
  "required-cjs.vmtest.cjs": `const { defineTest } = require("haltpoint");
module.exports = defineTest({ nodes: { server: { backend: "local" } }, async testScript({ server }) { ${HOSTNAME_CHECK} } });
`,
};

/** A test that holds its machine (with an ssh backdoor) until a file on the host appears. */
const HOLD_TEST = `import { defineTest } from "haltpoint";
export default defineTest({
  nodes: { server: { backend: "local" } },
  sshBackdoor: true,
  async testScript({ server }) {
    await server.waitForFile(process.env.HOLD_UNTIL!);
  },
});
`;

/** A test file that takes until a host file appears to load, and says when it started loading. */
const SLOW_LOAD_TEST = `import { existsSync, writeFileSync } from "node:fs";
import { defineTest } from "haltpoint";
writeFileSync(process.env.LOADING_MARK, "");
await new Promise((resolve) => {
  const poll = setInterval(() => existsSync(process.env.LOAD_UNTIL) && (clearInterval(poll), resolve()), 20);
});
export default defineTest({ nodes: { server: { backend: "local" } }, async testScript() {} });
`;

/** Poll until `ok()` (a file appears, a line is printed); fail if `gone()` first. */
async function until(ok: () => boolean, gone: () => boolean): Promise<void> {
  while (!ok()) {
    if (gone()) throw new Error("the process ended first");
    await new Promise((r) => setTimeout(r, 20));
  }
}

const TSCONFIG = { compilerOptions: { strict: true, module: "nodenext", moduleResolution: "nodenext", noEmit: true }, include: ["tests"] };

describe("haltpoint installed from its npm pack tarball", () => {
  let base: string;
  let tarball: string;

  /** A process as `user` (root: this one; nobody: through setpriv), with its own HOME and npm cache. */
  function as(user: "root" | "nobody", file: string, args: string[], o: { cwd?: string; env?: Record<string, string> } = {}) {
    const home = join(base, `home-${user}`);
    const env = { HOME: home, npm_config_cache: join(home, ".npm"), npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false", CI: "true", NO_COLOR: "1", PATH: PLAIN_PATH, ...o.env };
    const [cmd, argv] = user === "root" ? [file, args] : ["setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", file, ...args]];
    return execa(cmd, argv as string[], { reject: false, all: true, timeout: 300_000, cwd: o.cwd, env, extendEnv: false });
  }

  /** A fresh `npm init -y` project of `user` with haltpoint installed from the tarball. */
  async function project(user: "root" | "nobody", files: Record<string, string>): Promise<string> {
    const dir = join(base, `project-${user}`);
    mkdirSync(join(dir, "tests"), { recursive: true });
    mkdirSync(join(base, `home-${user}`), { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, "tests", name), text);
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2));
    if (user === "nobody") for (const d of [dir, join(dir, "tests"), join(base, "home-nobody")]) chownSync(d, NOBODY, NOBODY);
    if (user === "nobody") for (const f of readdirSync(join(dir, "tests"))) chownSync(join(dir, "tests", f), NOBODY, NOBODY);
    if (user === "nobody") chownSync(join(dir, "tsconfig.json"), NOBODY, NOBODY);
    const init = await as(user, "npm", ["init", "-y"], { cwd: dir });
    assert.equal(init.exitCode, 0, init.all);
    assert.equal(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).type ?? "commonjs", "commonjs", "npm init -y makes a CommonJS package");
    // The unprivileged user's install runs no install script (npm 11 lists them and a later npm
    // blocks them unless approved; docs/first-steps.md): haltpoint must not need them. Root's runs them.
    const install = await as(user, "npm", ["install", "--save-dev", tarball, "--prefer-offline", ...(user === "nobody" ? ["--ignore-scripts"] : [])], { cwd: dir });
    assert.equal(install.exitCode, 0, install.all);
    if (user === "nobody") assert.ok(!existsSync(join(dir, "node_modules/ssh2/lib/protocol/crypto/build")), "ssh2's native binding was not built: its JavaScript fallback serves the SSH backdoor below");
    return dir;
  }

  before(async () => {
    // Not under /tmp: a local machine has a private /tmp, and the hold test waits for a file here.
    base = tempDir("hp-package-", "/var/tmp");
    chmodSync(base, 0o755); // the unprivileged user reads the tarball and owns its project here
    tarball = await packHaltpoint(base);
    chmodSync(tarball, 0o644);
  });
  after(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test("the tarball has the compiled code and its declarations, and no tests, benches or CI files", async () => {
    const list = (await execa("tar", ["tzf", tarball])).stdout.split("\n");
    for (const f of ["package/dist/index.js", "package/dist/index.d.ts", "package/dist/orchestrator/cli.js", "package/bin/haltpoint.mjs", "package/worker/entry.mjs", "package/vm/image/guest-init.sh", "package/vm/qemu/netns-relay.mjs", "package/dist/worker/revive-test.js", "package/README.md"]) {
      assert.ok(list.includes(f), `${f} is in the tarball`);
    }
    assert.deepEqual(list.filter((f) => /^package\/(test|bench|\.ci|examples)\//.test(f) || /\.test\.(ts|js)$/.test(f)), []);
    // Every file the code opens from the package at run time (packageFile/shippedFile) is shipped.
    const { execSync } = await import("node:child_process");
    const opened = execSync(`grep -rhoE '(packageFile|shippedFile)\\("[^"]+"\\)' --include=*.ts orchestrator hooks vm worker index.ts`, { cwd: ROOT, encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .map((m) => /"([^"]+)"/.exec(m)![1]!);
    assert.ok(opened.length >= 5, `found ${opened.join(", ")}`);
    for (const f of new Set(opened)) assert.ok(list.includes(`package/${f}`), `${f} (opened at run time) is in the tarball`);
    assert.deepEqual(list.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")), [], "no TypeScript sources: users run dist/");
  });

  test("in a fresh CommonJS project: its test type-checks with a plain strict tsconfig, and every kind of test file runs with npx haltpoint run", async () => {
    const dir = await project("root", TEST_FILES);
    const tsc = await execa(TSC, ["-p", dir], { reject: false, all: true });
    assert.equal(tsc.exitCode, 0, tsc.all);
    const r = await as("root", "npx", ["haltpoint", "run", "tests"], { cwd: dir });
    assert.equal(r.exitCode, 0, r.all);
    // One test per file: the default name is the file's without its .vmtest.* (names must be unique).
    for (const name of ["web", "esm-mts", "imports-cts", "required-js", "imports-js", "esm-mjs", "required-cjs"]) assert.match(r.all!, new RegExp(`^${name}#1: PASS`, "m"), r.all);
    assert.match(r.all!, /7 passed, 0 failed/);
  });

  test("as an unprivileged user (setpriv --reuid 65534), installed with --ignore-scripts: tests pass, with the node's hostname, its SSH backdoor through ssh2's JavaScript crypto", async () => {
    const dir = await project("nobody", { "web.vmtest.ts": TEST_FILES["web.vmtest.ts"]!, "hold.vmtest.ts": HOLD_TEST });
    const run = as("nobody", "npx", ["haltpoint", "run", "tests"], { cwd: dir, env: { HOLD_UNTIL: join(dir, "go") } });
    let out = "";
    const printed = new Promise<string>((resolve, reject) => {
      run.all!.on("data", (c: Buffer) => {
        out += c;
        const m = /ssh backdoor: (ssh -o ProxyCommand=.* root@server)$/m.exec(out);
        if (m) resolve(m[1]!);
      });
      run.once("exit", () => reject(new Error(`exited before printing a ProxyCommand line:\n${out}`)));
    });
    const line = await printed;
    // Pasted into a shell in another directory, with no haltpoint on PATH, it reaches the machine.
    assert.doesNotMatch(line, /ProxyCommand='haltpoint /, "haltpoint is named by its path, not looked up on PATH");
    const elsewhere = tempDir("hp-elsewhere-");
    chownSync(elsewhere, NOBODY, NOBODY);
    const ssh = await as("nobody", "sh", ["-c", `${line} -o BatchMode=yes -o LogLevel=ERROR 'echo reached $(hostname)'`], { cwd: elsewhere });
    rmSync(elsewhere, { recursive: true, force: true });
    writeFileSync(join(dir, "go"), "");
    const r = await run;
    assert.equal(ssh.exitCode, 0, `${ssh.all}\n--- the run printed:\n${r.all}`);
    assert.match(ssh.stdout as string, /^reached server$/m);
    assert.equal(r.exitCode, 0, r.all);
    assert.match(r.all!, /^web#1: PASS/m);
    assert.match(r.all!, /2 passed, 0 failed/);
    assert.doesNotMatch(r.all!, /without their own namespaces/, "user namespaces are allowed on this host");
  });

  test("SIGINT during startup (while the test files load, and once planned): exit status 130, and the reports say interrupted", async () => {
    const dir = join(base, "project-root");
    mkdirSync(join(dir, "startup"));
    writeFileSync(join(dir, "startup", "slow-load.vmtest.mjs"), SLOW_LOAD_TEST);
    writeFileSync(join(dir, "startup", "hold.vmtest.ts"), HOLD_TEST);
    const haltpointBin = join(dir, "node_modules/.bin/haltpoint");
    const loading = join(base, "loading"), loaded = join(base, "loaded");
    const env = { LOADING_MARK: loading, LOAD_UNTIL: loaded, HOLD_UNTIL: join(base, "never") };

    const whileLoading = as("root", haltpointBin, ["run", "startup/slow-load.vmtest.mjs", "--json", join(base, "loading.json")], { cwd: dir, env });
    let out1 = "";
    whileLoading.all!.on("data", (c: Buffer) => (out1 += c));
    await until(() => existsSync(loading), () => whileLoading.exitCode !== null);
    whileLoading.kill("SIGINT");
    // The run has taken the signal; now let the file finish loading.
    await until(() => /SIGINT: starting no more tests/.test(out1), () => whileLoading.exitCode !== null);
    writeFileSync(loaded, "");
    const r1 = await whileLoading;
    assert.equal(r1.exitCode, 130, r1.all);
    assert.match(r1.all!, /\(interrupted\)/);
    assert.equal(JSON.parse(readFileSync(join(base, "loading.json"), "utf8")).interrupted, true);

    const planned = as("root", haltpointBin, ["run", "startup/hold.vmtest.ts", "--json", join(base, "planned.json")], { cwd: dir, env });
    let out = "";
    planned.all!.on("data", (c: Buffer) => (out += c));
    await until(() => /^haltpoint: \d+ tests?,/m.test(out), () => planned.exitCode !== null);
    planned.kill("SIGINT");
    const r2 = await planned;
    assert.equal(r2.exitCode, 130, r2.all);
    assert.match(r2.all!, /\(interrupted\)/);
    assert.equal(JSON.parse(readFileSync(join(base, "planned.json"), "utf8")).interrupted, true);
  });
});
