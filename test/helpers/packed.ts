// haltpoint as a user gets it: the real `npm pack` tarball, installed into a fresh `npm init -y`
// project under /var/tmp (not /tmp: a local machine has a private /tmp).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { execa } from "execa";
import { distIsFresh } from "../../bin/dist-is-fresh.mjs";
import { ROOT } from "./cli.ts";

const NPM_ENV = { npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false" };

/**
 * Pack this repository into `dir`; the tarball's path. When dist/ is already built from the
 * sources as they are (npm test builds it first), without npm's `prepare` script, which would
 * only compile the same dist/ again (about 8 s per pack here; three test files pack). The
 * tarball is the same; .ci/quickstart (the first steps) still packs through `prepare`.
 */
export async function packHaltpoint(dir: string): Promise<string> {
  const built = distIsFresh(pathToFileURL(`${ROOT}/`));
  const pack = await execa("npm", ["pack", ...(built ? ["--ignore-scripts"] : []), "--pack-destination", dir], { cwd: ROOT, reject: false, all: true, env: NPM_ENV });
  if (pack.exitCode !== 0) throw new Error(`npm pack failed:\n${pack.all}`);
  return join(dir, readdirSync(dir).find((f) => f.endsWith(".tgz"))!);
}

/** A fresh `npm init -y` project in `dir` (CommonJS, as npm makes it; `esm`: "type": "module") with the tarball installed. */
export async function freshProject(dir: string, tarball: string, o: { esm?: boolean } = {}): Promise<void> {
  const init = await execa("npm", ["init", "-y"], { cwd: dir, reject: false, all: true, env: NPM_ENV });
  if (init.exitCode !== 0) throw new Error(`npm init -y failed:\n${init.all}`);
  if (o.esm) {
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    writeFileSync(join(dir, "package.json"), `${JSON.stringify({ ...pkg, type: "module" }, null, 2)}\n`);
  }
  const install = await execa("npm", ["install", "--save-dev", "--prefer-offline", tarball], { cwd: dir, reject: false, all: true, env: NPM_ENV });
  if (install.exitCode !== 0) throw new Error(`npm install ${tarball} failed:\n${install.all}`);
}

/** Run a command in a project as a user does (CI set, no colour), never rejecting. */
export function inProject(dir: string, file: string, args: string[], o: { input?: string; env?: Record<string, string> } = {}) {
  return execa(file, args, { cwd: dir, reject: false, all: true, timeout: 300_000, env: { CI: "true", NO_COLOR: "1", ...NPM_ENV, ...o.env }, ...(o.input !== undefined ? { input: o.input } : { stdin: "ignore" as const }) });
}
