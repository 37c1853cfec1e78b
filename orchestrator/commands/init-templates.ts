// What `haltpoint init` writes, in one place: the config file, the first test for each
// backend, and the CI workflows. Each text is complete as written (no placeholders filled in
// later) so that what a user reads here is what lands in their project.

export type InitBackend = "local" | "qemu" | "debian";
export type InitCi = "github" | "gitlab" | "none";

export const INIT_BACKENDS: readonly InitBackend[] = ["local", "qemu", "debian"];
export const INIT_CIS: readonly InitCi[] = ["github", "gitlab", "none"];

/** Where the first test goes, relative to the project. A `.vmtest.ts` loads in CommonJS and ESM projects alike (through tsx). */
export const FIRST_TEST = "tests/hello.vmtest.ts";
/** JSON: the one config format that loads the same whatever the project's module type. */
export const CONFIG_FILE = "haltpoint.config.json";
export const GITHUB_WORKFLOW = ".github/workflows/haltpoint.yml";
export const GITLAB_CI = ".gitlab-ci.yml";
export const SCRIPT_NAME = "test:vm";
export const SCRIPT = "haltpoint run";
export const GITIGNORE_LINE = ".haltpoint/";

/** The config file: where the tests are and which backend nodes get when they name none. */
export function configText(backend: InitBackend): string {
  const config = {
    paths: ["tests"],
    backend: backend === "local" ? "local" : "qemu",
    profiles: { ci: { quiet: true } },
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

const LOCAL_TEST = `// A first haltpoint test: two machines that are process sandboxes on this host (no VM needed).
// Run it with: npx haltpoint run   (or npx haltpoint run --watch, to rerun it on each save)
import { defineTest } from "haltpoint";

export default defineTest({
  nodes: { server: { backend: "local" }, client: { backend: "local" } },
  async testScript({ server, client }) {
    await server.succeed("echo 'hello from the server' > greeting");
    const text = await server.succeed("cat greeting");
    if (!text.includes("hello")) throw new Error(\`unexpected greeting: \${text}\`);
    await client.fail("test -e greeting"); // each machine has its own directory
  },
});
`;

const QEMU_TEST = `// A first haltpoint test: two real VMs (QEMU) on their own network. The first run builds the
// guest image (needs qemu-system-x86, qemu-utils, cpio and zstd); later runs start from snapshots.
// Run it with: npx haltpoint run   (or npx haltpoint run --watch, to rerun it on each save)
import { defineTest } from "haltpoint";

export default defineTest({
  nodes: {
    server: { backend: "qemu", memory: 256 },
    client: { backend: "qemu", memory: 256 },
  },
  globalTimeout: 300,
  async testScript({ server, client, startAll }) {
    await startAll();
    await server.succeed("mkdir -p /srv && echo 'hello from the server' > /srv/index.html");
    await server.succeed("httpd -p 80 -h /srv");
    await server.waitForOpenPort(80);
    const page = await client.succeed("wget -q -O - http://server/index.html");
    if (page.trim() !== "hello from the server") throw new Error(\`unexpected page: \${page}\`);
  },
});
`;

const DEBIAN_TEST = `// A first haltpoint test: a Debian 12 guest with systemd as PID 1 and lighttpd installed.
// The first run builds the image from Debian's packages (as root, about a minute); later runs
// start from snapshots. Run it with: npx haltpoint run   (or npx haltpoint run --watch)
import { defineTest } from "haltpoint";

export default defineTest({
  nodes: { server: { image: { packages: ["lighttpd", "curl"] } } },
  globalTimeout: 900,
  async testScript({ server, startAll }) {
    await startAll();
    await server.waitForUnit("lighttpd.service");
    await server.waitForOpenPort(80);
    await server.succeed("curl -sf http://localhost/index.lighttpd.html");
  },
});
`;

export function firstTestText(backend: InitBackend): string {
  return backend === "local" ? LOCAL_TEST : backend === "qemu" ? QEMU_TEST : DEBIAN_TEST;
}

/** Debian packages a CI machine needs for the backend (none for local machines). */
function aptPackages(backend: InitBackend): string | undefined {
  if (backend === "local") return undefined;
  const qemu = "qemu-system-x86 qemu-utils cpio zstd openssh-client";
  return backend === "debian" ? `${qemu} mmdebstrap e2fsprogs` : qemu;
}

/** GitHub Actions: a matrix of shards, then one merge job whose status is the suite's. */
export function githubWorkflowText(backend: InitBackend): string {
  const apt = aptPackages(backend);
  const aptStep = apt ? `      - run: sudo apt-get update && sudo apt-get install -y ${apt}\n` : "";
  // A Debian image is built as root.
  const run = backend === "debian" ? "sudo --preserve-env=PATH npx haltpoint run" : "npx haltpoint run";
  return `# haltpoint's VM tests in shards, then one merged report (written by haltpoint init).
name: vm-tests
on: [push, pull_request]
jobs:
  test:
    strategy: { fail-fast: false, matrix: { shard: [1, 2] } }
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with: { node-version: 20 }
${aptStep}      - run: npm ci
      - run: ${run} --profile ci --shard \${{ matrix.shard }}/2 --pass-with-no-tests --json shard-\${{ matrix.shard }}.json
      - uses: actions/upload-artifact@v4
        if: always()
        with: { name: "shard-\${{ matrix.shard }}", path: "shard-\${{ matrix.shard }}.json" }
  merge:
    needs: test
    if: always()
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with: { node-version: 20 }
      - run: npm ci
      - uses: actions/download-artifact@v4
        with: { pattern: "shard-*", merge-multiple: true }
      - run: npx haltpoint merge shard-*.json --junit all.xml --json all.json
      - uses: actions/upload-artifact@v4
        if: always()
        with: { name: merged-report, path: "all.*" }
`;
}

/** GitLab CI: `parallel` jobs take their shard from CI_NODE_INDEX/CI_NODE_TOTAL (--shard auto). */
export function gitlabCiText(backend: InitBackend): string {
  const apt = aptPackages(backend);
  const before = apt ? `  before_script:\n    - apt-get update && apt-get install -y ${apt}\n` : "";
  return `# haltpoint's VM tests in shards, then one merged report (written by haltpoint init).
vm-test:
  image: node:20-bookworm
  parallel: 2
${before}  script:
    - npm ci
    - npx haltpoint run --profile ci --shard auto --pass-with-no-tests --json shard-$CI_NODE_INDEX.json
  artifacts: { when: always, paths: [shard-*.json] }
vm-merge:
  image: node:20-bookworm
  needs: [vm-test]
  when: always
  script:
    - npm ci
    - npx haltpoint merge shard-*.json --junit all.xml --json all.json
  artifacts: { when: always, reports: { junit: all.xml }, paths: [all.json] }
`;
}
