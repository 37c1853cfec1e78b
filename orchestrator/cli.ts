import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { UsageError } from "./discovery.ts";
import { runCommand } from "./run-command.ts";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} takes a positive integer, got '${v}'`);
    return n;
  };
}

function regex(v: string): RegExp {
  try {
    return new RegExp(v);
  } catch (e) {
    throw new InvalidArgumentError(`--filter takes a regular expression: ${(e as Error).message}`);
  }
}

/** The `haltpoint` command line. Resolves with the process exit status. */
export async function main(argv: string[]): Promise<number> {
  let status = 0;
  const program = new Command("haltpoint")
    .description("Run VM tests in parallel; halt a failing test at a breakpoint you can attach to.")
    .version(pkg.version, "-V, --version")
    .exitOverride()
    .showHelpAfterError("(run haltpoint --help for usage)")
    .configureOutput({ outputError: (s, write) => write(s.startsWith("error:") ? `haltpoint: ${s}` : s) });

  program
    .command("run")
    .description("run the VM tests in the given files and directories (default: .)")
    .argument("[paths...]", "test files (*.vmtest.ts, .mts, .js, .mjs) or directories to search")
    .option("-j, --jobs <n>", "tests run at once", positiveInt("--jobs"), availableParallelism())
    .addOption(new Option("--backend <name>", "backend of nodes that name none").choices(["local", "qemu"]).default("local"))
    .option("--repeat <n>", "run each test N times", positiveInt("--repeat"), 1)
    .option("--until-fail", "start no more runs after the first failure", false)
    .option("--filter <regex>", "run only tests whose name or file matches", regex)
    .option("--log-dir <dir>", "where run logs and consoles go (default .haltpoint/runs/<timestamp>)")
    .option("--junit <file>", "write a JUnit XML report")
    .option("--json <file>", "write a JSON report")
    .option("-q, --quiet", "print results and failures only, not every event", false)
    .option("--worker-memory <mib>", "heap limit of each worker thread", positiveInt("--worker-memory"))
    .option("--abort-grace <s>", "seconds a stopped test may take to tear down before its worker is killed", positiveInt("--abort-grace"), 10)
    .action(async (paths: string[], opts) => {
      status = await runCommand({
        paths,
        jobs: opts.jobs,
        backend: opts.backend,
        repeat: opts.repeat,
        untilFail: opts.untilFail,
        filter: opts.filter,
        logDir: opts.logDir,
        junit: opts.junit,
        json: opts.json,
        quiet: opts.quiet,
        workerMemoryMb: opts.workerMemory,
        abortGrace: opts.abortGrace,
      });
    });

  try {
    await program.parseAsync(argv, { from: "user" });
    if (argv.length === 0) {
      program.outputHelp();
      return 2;
    }
    return status;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.code === "commander.help") return 0;
      return 2;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`haltpoint: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
