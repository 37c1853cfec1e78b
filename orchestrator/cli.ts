import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { UsageError } from "./discovery.ts";
import { runCommand } from "./run-command.ts";
import parseMs from "ms";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} takes a positive integer, got '${v}'`);
    return n;
  };
}

function port(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < 1 || n > 65535) throw new InvalidArgumentError(`${flag} takes a TCP port (1-65535), got '${v}'`);
    return n;
  };
}

/** "30m", "90s", "1h", "2d" or plain seconds → seconds. */
function duration(flag: string) {
  return (v: string): number => {
    const ms = /^\d+(\.\d+)?$/.test(v) ? Number(v) * 1000 : parseMs(v as parseMs.StringValue);
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms <= 0) throw new InvalidArgumentError(`${flag} takes a duration such as 30m, 90s or 1h, got '${v}'`);
    return ms / 1000;
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
    .addOption(new Option("--accel <accel>", "qemu accelerator: auto probes KVM with a real boot, falls back to TCG").choices(["auto", "kvm", "tcg"]).default("auto"))
    .option("--memory <mib>", "memory that qemu machines may take at once (default 80% of RAM)", positiveInt("--memory"))
    .option("--cores <n>", "vCPUs that qemu machines may take at once (default: every core)", positiveInt("--cores"))
    .option("--debug-hook", "halt a failing test at a breakpoint: machines frozen, a console to attach to", false)
    .option("--debug-port <port>", "first TCP port for breakpoint consoles", port("--debug-port"), 4444)
    .option("--debug-bind <addr>", "address breakpoint consoles listen on (they run code: keep it loopback)", "127.0.0.1")
    .option("--max-frozen <n>", "at most this many tests halted at once", positiveInt("--max-frozen"), 4)
    .option("--freeze-ttl <duration>", "release a forgotten breakpoint after this long (e.g. 30m, 90s)", duration("--freeze-ttl"), 30 * 60)
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
        memoryMiB: opts.memory,
        accel: opts.accel,
        debugHook: opts.debugHook,
        debugPort: opts.debugPort,
        debugBind: opts.debugBind,
        maxFrozen: opts.maxFrozen,
        freezeTtl: opts.freezeTtl,
        cores: opts.cores,
        abortGrace: opts.abortGrace,
      });
    });

  program
    .command("ls")
    .description("list the tests halted at a breakpoint, across every haltpoint run on this host")
    .action(async () => {
      const { lsCommand } = await import("./control-commands.ts");
      status = await lsCommand();
    });
  program
    .command("attach")
    .description("open a halted test's console (a JavaScript REPL inside its worker)")
    .argument("<id>", "breakpoint id, as `haltpoint ls` shows")
    .action(async (id: string) => {
      const { attachCommand } = await import("./control-commands.ts");
      status = await attachCommand(id);
    });
  program
    .command("release")
    .description("release a halted test (it then fails and tears down), or all of them")
    .argument("[id]", "breakpoint id, as `haltpoint ls` shows")
    .option("--all", "release every halted test on this host", false)
    .action(async (id: string | undefined, opts: { all: boolean }) => {
      if (!id && !opts.all) throw new UsageError("release needs a breakpoint id or --all");
      const { releaseCommand } = await import("./control-commands.ts");
      status = await releaseCommand(opts.all ? { all: true } : id!);
    });
  const image = program.command("image").description("haltpoint's default guest image");
  image
    .command("build")
    .description("build (or reuse) the guest kernel + initramfs from Debian packages")
    .option("--cache-dir <dir>", "image cache root (default $XDG_CACHE_HOME/haltpoint/images)")
    .option("--force", "rebuild even if the cache has it", false)
    .action(async (opts: { cacheDir?: string; force: boolean }) => {
      const { imageBuildCommand } = await import("../vm/image/cli.ts");
      status = await imageBuildCommand({ cacheDir: opts.cacheDir, force: opts.force });
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
