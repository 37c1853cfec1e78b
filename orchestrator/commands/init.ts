// `haltpoint init`: set up haltpoint in the current project. It asks on a terminal (or takes
// --yes and the flags), writes the config file, a first test, a CI workflow, the .gitignore
// line and a package.json script, and never overwrites a file: what exists is left alone
// and named. Without a terminal it takes the defaults and says so.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline/promises";
import { CONFIG_FILE_NAMES } from "../settings/config-file.ts";
import { UsageError } from "../selection/discovery.ts";
import {
  CONFIG_FILE,
  FIRST_TEST,
  GITHUB_WORKFLOW,
  GITIGNORE_LINE,
  GITLAB_CI,
  INIT_BACKENDS,
  INIT_CIS,
  SCRIPT,
  SCRIPT_NAME,
  configText,
  firstTestText,
  githubWorkflowText,
  gitlabCiText,
  type InitBackend,
  type InitCi,
} from "./init-templates.ts";

export interface InitOptions {
  cwd: string;
  /** Take the defaults for every question not answered by a flag. */
  yes: boolean;
  backend?: InitBackend;
  ci?: InitCi;
  /** Where questions are asked (default: stdin/stdout when both are terminals). */
  interactive?: boolean;
  out?: (line: string) => void;
}

const DEFAULTS = { backend: "local" as InitBackend, ci: "github" as InitCi };

/** What init did with one file. */
type Outcome = { file: string; did: "wrote" | "appended" | "added" | "left"; why?: string };

/**
 * Questions on a terminal, one line each. Lines are queued as they come: answers typed (or
 * pasted) ahead of their question are kept for it, not dropped between two questions.
 */
class Asker {
  private readonly rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true });
  private readonly lines: string[] = [];
  private waiting: ((line: string | undefined) => void) | undefined;
  private closed = false;

  constructor() {
    this.rl.on("line", (l) => (this.waiting ? (this.waiting(l), (this.waiting = undefined)) : this.lines.push(l)));
    this.rl.on("close", () => {
      this.closed = true;
      this.waiting?.(undefined);
    });
    // Ctrl-C at a question ends init, having written nothing.
    this.rl.on("SIGINT", () => {
      process.stdout.write("\n");
      this.rl.close();
      this.cancelled = true;
    });
  }
  cancelled = false;

  private next(): Promise<string | undefined> {
    if (this.lines.length) return Promise.resolve(this.lines.shift());
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((r) => (this.waiting = r));
  }

  async ask<T extends string>(question: string, choices: readonly T[], def: T): Promise<T> {
    for (;;) {
      this.rl.setPrompt(`${question} (${choices.join(", ")}) [${def}]: `);
      this.rl.prompt();
      const line = await this.next();
      if (line === undefined) {
        if (this.cancelled) throw new InitCancelled();
        return def; // end of input (Ctrl-D): the default
      }
      const a = line.trim().toLowerCase();
      if (a === "") return def;
      const hit = choices.find((c) => c === a);
      if (hit) return hit;
      process.stdout.write(`  please answer one of: ${choices.join(", ")}\n`);
    }
  }

  close(): void {
    this.rl.close();
  }
}

class InitCancelled extends Error {}

/** Write `text` to `file` unless it exists. */
function writeNew(cwd: string, file: string, text: string): Outcome {
  const abs = join(cwd, file);
  if (existsSync(abs)) return { file, did: "left", why: "it exists" };
  mkdirSync(dirname(abs), { recursive: true });
  writeFileSync(abs, text, { flag: "wx" });
  return { file, did: "wrote" };
}

function gitignore(cwd: string): Outcome {
  const file = join(cwd, ".gitignore");
  if (!existsSync(file)) {
    writeFileSync(file, `${GITIGNORE_LINE}\n`, { flag: "wx" });
    return { file: ".gitignore", did: "wrote" };
  }
  const text = readFileSync(file, "utf8");
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  if (lines.some((l) => l === GITIGNORE_LINE || l === ".haltpoint" || l === "/.haltpoint/" || l === "/.haltpoint")) return { file: ".gitignore", did: "left", why: "it ignores .haltpoint/ already" };
  writeFileSync(file, `${text.length && !text.endsWith("\n") ? "\n" : ""}${GITIGNORE_LINE}\n`, { flag: "a" });
  return { file: ".gitignore", did: "appended" };
}

/** Add the script to package.json, keeping its indentation and every other key as it was. */
function packageScript(cwd: string): Outcome {
  const file = join(cwd, "package.json");
  const text = readFileSync(file, "utf8");
  let pkg: { scripts?: Record<string, string> };
  try {
    pkg = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not valid JSON (${(e as Error).message}): fix it, then run haltpoint init again`);
  }
  if (pkg.scripts?.[SCRIPT_NAME] !== undefined) return { file: "package.json", did: "left", why: `it has a "${SCRIPT_NAME}" script already` };
  pkg.scripts = { ...pkg.scripts, [SCRIPT_NAME]: SCRIPT };
  const indent = /^[ \t]+(?=")/m.exec(text)?.[0] ?? "  ";
  writeFileSync(file, `${JSON.stringify(pkg, null, indent)}${text.endsWith("\n") ? "\n" : ""}`);
  return { file: "package.json", did: "added", why: `script "${SCRIPT_NAME}": "${SCRIPT}"` };
}

/** `haltpoint init`. Resolves with the exit status. */
export async function initCommand(o: InitOptions): Promise<number> {
  const out = o.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  if (!existsSync(join(o.cwd, "package.json"))) {
    throw new UsageError(`no package.json in ${o.cwd}: run haltpoint init in your project's directory (npm init -y makes one)`);
  }
  let backend = o.backend;
  let ci = o.ci;
  const interactive = o.interactive ?? (Boolean(process.stdin.isTTY) && Boolean(process.stdout.isTTY));
  if (!o.yes && (backend === undefined || ci === undefined)) {
    if (interactive) {
      const asker = new Asker();
      try {
        backend ??= await asker.ask("Backend of the first test: local (process sandboxes, no VM), qemu (VMs), debian (Debian guests with systemd)", INIT_BACKENDS, DEFAULTS.backend);
        ci ??= await asker.ask("CI workflow", INIT_CIS, DEFAULTS.ci);
      } catch (e) {
        if (!(e instanceof InitCancelled)) throw e;
        out("haltpoint init: cancelled, nothing written");
        return 130;
      } finally {
        asker.close();
      }
    } else {
      const took = [backend === undefined ? `--backend ${DEFAULTS.backend}` : "", ci === undefined ? `--ci ${DEFAULTS.ci}` : ""].filter(Boolean).join(" ");
      out(`haltpoint init: no terminal to ask on: taking the defaults (${took}; choose with --backend local|qemu|debian --ci github|gitlab|none)`);
    }
  }
  backend ??= DEFAULTS.backend;
  ci ??= DEFAULTS.ci;

  const done: Outcome[] = [];
  // A config in another format counts as the config: two would be an error at run time.
  const otherConfig = CONFIG_FILE_NAMES.find((n) => n !== CONFIG_FILE && existsSync(join(o.cwd, n)));
  done.push(otherConfig ? { file: CONFIG_FILE, did: "left", why: `${otherConfig} is the config already` } : writeNew(o.cwd, CONFIG_FILE, configText(backend)));
  done.push(writeNew(o.cwd, FIRST_TEST, firstTestText(backend)));
  if (ci === "github") done.push(writeNew(o.cwd, GITHUB_WORKFLOW, githubWorkflowText(backend)));
  if (ci === "gitlab") done.push(writeNew(o.cwd, GITLAB_CI, gitlabCiText(backend)));
  done.push(gitignore(o.cwd));
  done.push(packageScript(o.cwd));

  for (const d of done) {
    const verb = { wrote: "wrote", appended: "appended", added: "added", left: "left alone" }[d.did].padEnd(10);
    const what = d.did === "appended" ? `${d.file} (${GITIGNORE_LINE}: run logs, kept machine state, breakpoint bundles)` : d.file;
    out(`  ${verb} ${what}${d.why ? `: ${d.why}` : ""}`);
  }
  const installed = hasHaltpointDependency(o.cwd);
  out("");
  out("Next:");
  if (!installed) out("  npm install --save-dev haltpoint");
  out(`  npx haltpoint run            # runs ${FIRST_TEST} (the config's paths: tests/)`);
  out("  npx haltpoint run --watch    # reruns a test when it or a file it imports changes");
  if (backend === "debian") out("  (the Debian image is built as root on the first run, about a minute)");
  return 0;
}

function hasHaltpointDependency(cwd: string): boolean {
  try {
    const pkg = JSON.parse(readFileSync(join(cwd, "package.json"), "utf8")) as Record<string, Record<string, string> | undefined>;
    return Boolean(pkg.devDependencies?.haltpoint ?? pkg.dependencies?.haltpoint);
  } catch {
    return false;
  }
}
