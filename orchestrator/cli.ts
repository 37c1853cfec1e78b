import { dropOutputWhenReaderLeaves } from "./closed-output.ts";
import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { UsageError } from "./selection/discovery.ts";
import { runCommand } from "./commands/run.ts";
import { resolveSettings } from "./settings/run-settings.ts";
import { bool, duration, factor, port, positiveInt, queueAddress, regex, shard, wholeNumber } from "./option-parsers.ts";
import { DEFAULT_CPU_OVERCOMMIT } from "./scheduling/resource-budget.ts";
import { packageFile } from "../package-root.ts";

const pkg = JSON.parse(readFileSync(packageFile("package.json"), "utf8")) as { version: string };

/**
 * The --save-breakpoints default: in a run nobody can attach to (neither stdin nor stdout is a
 * terminal, and CI is set and not "false") a test that halts (--debug-hook, or its own
 * enableDebugHook) is saved as a bundle and released, so the job ends by itself.
 */
function nobodyCanAttach(): boolean {
  return !process.stdout.isTTY && !process.stdin.isTTY && Boolean(process.env.CI) && process.env.CI !== "false";
}

/** Options `haltpoint run` and `haltpoint list` share: which tests, and with what settings. */
function selectionOptions(): Option[] {
  return [
    new Option("--backend <name>", "backend of nodes that name none").choices(["local", "qemu"]).default("local"),
    new Option("--filter <regex>", "only tests whose name or file matches").argParser(regex),
    new Option("--shard <K/N>", "only slice K of N of the suite (by test name, or by time with --durations); auto or auto/N: K and N from the CI").argParser(shard),
    new Option("--durations <reports...>", "JSON reports of earlier runs: --shard balances the shards by these durations"),
    new Option("--rerun-failed <report>", "only the runs that failed or were flaky in this JSON report"),
    new Option("--pass-with-no-tests", "selecting no test passes (else exit status 4)").default(false),
    new Option("--retries <n>", "run a failed run again up to N times; failed then passed is FLAKY (default: each test's `retries`, else 0)").argParser(wholeNumber("--retries")),
    new Option("--timeout <duration>", "every test's global timeout (overrides its globalTimeout), e.g. 10m").argParser(duration("--timeout")),
    new Option("--slow-timeout <duration>", "print a SLOW line for a run still going after this long (and each time again), e.g. 60s").argParser(duration("--slow-timeout")),
    new Option("--config <file>", "config file (default: haltpoint.config.json, .mjs or .ts in the working directory)"),
    new Option("--profile <name>", "the config file's profile to use"),
  ];
}

/** The `haltpoint` command line. Resolves with the process exit status. */
export async function main(argv: string[]): Promise<number> {
  dropOutputWhenReaderLeaves();
  let status = 0;
  const program = new Command("haltpoint")
    .description("Run VM tests in parallel; halt a failing test at a breakpoint you can attach to.")
    .version(pkg.version, "-V, --version")
    .exitOverride()
    .showHelpAfterError("(run haltpoint --help for usage)")
    .configureOutput({ outputError: (s, write) => write(s.startsWith("error:") ? `haltpoint: ${s}` : s) });

  const run = program
    .command("run")
    .description("run the VM tests in the given files and directories (default: .)")
    .argument("[paths...]", "test files (*.vmtest.ts, .mts, .cts, .js, .mjs, .cjs) or directories to search")
    .option("-j, --jobs <n>", "tests run at once", positiveInt("--jobs"), availableParallelism())
    .option("--repeat <n>", "run each test N times", positiveInt("--repeat"), 1)
    .option("--until-fail", "start no more runs after the first failure (--max-fail 1)", false)
    .option("--max-fail <n>", "start no more runs after N failed runs", positiveInt("--max-fail"))
    .addOption(new Option("--stress-duration <duration>", "repeat the runs until this much time is up (e.g. 10m, 90s)").argParser(duration("--stress-duration")).conflicts("repeat"))
    .option("--flaky-fails", "a FLAKY run fails the suite", false)
    .option("--log-dir <dir>", "where run logs and consoles go (default .haltpoint/runs/<timestamp>)")
    .option("--junit <file>", "write a JUnit XML report")
    .option("--json <file>", "write a JSON report")
    .option("--html <file>", "write an HTML report (one page, works offline; links into the log dir)")
    .option("-q, --quiet", "print results and failures only, not every event", false)
    .option("--worker-memory <mib>", "V8 heap limit of each worker thread (Buffers and other memory outside the JS heap are not limited)", positiveInt("--worker-memory"))
    .addOption(new Option("--accel <accel>", "qemu accelerator: auto probes KVM with a real boot, falls back to TCG").choices(["auto", "kvm", "tcg"]).default("auto"))
    .option("--memory <mib>", "memory that qemu machines may take at once (default 80% of RAM)", positiveInt("--memory"))
    .option("--cores <n>", "host cores for qemu machines (default: every core); they may run --cores × --cpu-overcommit vCPUs at once", positiveInt("--cores"))
    .option("--cpu-overcommit <factor>", "vCPUs admitted per core: a vCPU is a thread, not a reserved core; a test needing more than the whole budget runs alone (see docs/admission.md)", factor("--cpu-overcommit", 1), DEFAULT_CPU_OVERCOMMIT)
    .option("--debug-hook", "halt a failing test at a breakpoint: machines frozen, a console to attach to", false)
    .option("--save-breakpoints [dir]", "save each halted test as a bundle in DIR (default <log dir>/breakpoints) and release it, so the run ends by itself; implies --debug-hook (default: on when there is no terminal and CI is set)")
    .option("--no-save-breakpoints", "keep halted tests halted even in CI with --debug-hook")
    .option("--sign-key <file>", "sign saved bundles with this ed25519 private key (PEM) instead of your own (~/.config/haltpoint): revive checks it with --trust-key")
    .option("--ssh-backdoor", "give every machine an SSH socket, <dir>/<machine>_host.socket (default: on with the debug hook)")
    .option("--no-ssh-backdoor", "no SSH sockets, even with the debug hook")
    .option("-K, --keep-machine-state", "keep each machine's state (local: its directory; qemu: a writable overlay of its disk image) in .haltpoint/state/<test>/<machine> across runs (NixOS -K)", false)
    .option("--no-snapshot-boot", "boot every qemu machine cold instead of starting it from a saved snapshot of an identical machine")
    .option("--no-take-ahead", "in a flake hunt of one test, start each run's machines only when it begins (by default a worker starts its next run's while a run runs)")
    .option("--ssh-thaws <bool>", "connecting to a frozen machine's SSH socket thaws it (false: refuses)", bool("--ssh-thaws"), true)
    .option("--debug-port <port>", "first TCP port for breakpoint consoles", port("--debug-port"), 4444)
    .option("--debug-bind <addr>", "address breakpoint consoles listen on (they run code: keep it loopback)", "127.0.0.1")
    .option("--max-frozen <n>", "at most this many tests halted at once", positiveInt("--max-frozen"), 4)
    .option("--freeze-ttl <duration>", "release a forgotten breakpoint after this long (e.g. 30m, 90s)", duration("--freeze-ttl"), 30 * 60)
    .option("--queue <redis-url>", "queue mode: take runs from redis://[:PASSWORD@]HOST:PORT/NAME as they free up, with every other host given it (one NAME per suite run; haltpoint queue report writes the merged report)", queueAddress)
    .option("--queue-host <name>", "this host's name in the queue's report (default: hostname-pid)")
    .option("--queue-lease <duration>", "a run held by a host that died goes to another host after this long (e.g. 30s)", duration("--queue-lease"), 30)
    .option("-w, --watch", "run, then rerun the tests a change touches (a test file or a file it imports); keys: a all, f failed, Enter rerun, q quit", false)
    .option("--abort-grace <s>", "seconds a stopped test may take to tear down before its worker is killed", positiveInt("--abort-grace"), 10)
    .addHelpText(
      "after",
      "\nExit status: 0 all passed, 1 a test failed, 2 bad usage (also an unusable --log-dir, report path or\nHALTPOINT_STATE_DIR) or a test file that cannot load, 3 a report could not be written (the others\nwere), 4 no test was selected, 5 the --queue's Redis went away (this host's runs are in its reports),\n130 interrupted.",
    )
    .action(async (cliPaths: string[], opts, cmd: Command) => {
      const settings = await resolveSettings(cmd, cliPaths, cmd.options);
      if (opts.rerunFailed && (opts.repeat > 1 || opts.stressDuration)) throw new UsageError("--rerun-failed runs the failed runs again, each once: it takes no --repeat or --stress-duration");
      if (opts.queue && (opts.shard || opts.stressDuration || opts.rerunFailed)) throw new UsageError(`--queue shares out the runs itself: it takes no ${opts.shard ? "--shard" : opts.stressDuration ? "--stress-duration" : "--rerun-failed"}`);
      if (opts.untilFail && opts.maxFail !== undefined && opts.maxFail !== 1) throw new UsageError(`--until-fail is --max-fail 1: it cannot go with --max-fail ${opts.maxFail}`);
      if (opts.watch && (opts.repeat > 1 || opts.stressDuration || opts.rerunFailed || opts.queue)) throw new UsageError("--watch reruns what changes: it takes no --repeat, --stress-duration, --rerun-failed or --queue");
      const runOptions = {
        jobs: opts.jobs,
        backend: opts.backend,
        repeat: opts.repeat,
        untilFail: opts.untilFail,
        maxFail: opts.maxFail,
        passWithNoTests: opts.passWithNoTests,
        durations: opts.durations,
        rerunFailed: opts.rerunFailed,
        testSettings: settings.layers,
        stressDuration: opts.stressDuration,
        retries: settings.layers.strong.retries,
        flakyFails: opts.flakyFails,
        shard: opts.shard,
        filter: opts.filter,
        logDir: opts.logDir,
        junit: opts.junit,
        json: opts.json,
        html: opts.html,
        quiet: opts.quiet,
        workerMemoryMb: opts.workerMemory,
        memoryMiB: opts.memory,
        accel: opts.accel,
        // --save-breakpoints implies --debug-hook; unattended, any halt (the flag's or a test's enableDebugHook) is saved.
        debugHook: opts.debugHook || (opts.saveBreakpoints !== undefined && opts.saveBreakpoints !== false),
        saveBreakpoints: opts.saveBreakpoints ?? (nobodyCanAttach() ? true : undefined),
        signKey: opts.signKey,
        sshBackdoor: opts.sshBackdoor,
        sshThaws: opts.sshThaws,
        keepMachineState: opts.keepMachineState,
        snapshotBoot: opts.snapshotBoot,
        takeAhead: opts.takeAhead,
        debugPort: opts.debugPort,
        debugBind: opts.debugBind,
        maxFrozen: opts.maxFrozen,
        freezeTtl: opts.freezeTtl,
        cores: opts.cores,
        cpuOvercommit: opts.cpuOvercommit,
        abortGrace: opts.abortGrace,
        queue: opts.queue,
        queueHost: opts.queueHost,
        queueLease: opts.queueLease,
      };
      if (opts.watch) {
        const { watchCommand } = await import("./watch/watch-loop.ts");
        const { logDir, ...rest } = runOptions;
        status = await watchCommand({ run: rest, paths: settings.paths, logDir });
      } else status = await runCommand({ paths: settings.paths, ...runOptions });
    });

  for (const o of selectionOptions()) run.addOption(o);

  const list = program
    .command("list")
    .description("list the tests a run would run (name, file, nodes, retries, timeout) without running them")
    .argument("[paths...]", "test files or directories to search (default: .)")
    .option("--json", "print the list as JSON", false);
  for (const o of selectionOptions()) list.addOption(o);
  list.action(async (cliPaths: string[], opts, cmd: Command) => {
    const settings = await resolveSettings(cmd, cliPaths, run.options, { except: ["json"] });
    const { listCommand } = await import("./commands/list.ts");
    status = await listCommand({
      paths: settings.paths,
      backend: opts.backend,
      filter: opts.filter,
      shard: opts.shard,
      durations: opts.durations,
      rerunFailed: opts.rerunFailed,
      passWithNoTests: opts.passWithNoTests,
      json: opts.json,
      testSettings: settings.layers,
    });
  });

  program
    .command("init")
    .description("set up haltpoint in this project: a config file, a first test, a CI workflow, .gitignore and a package.json script (never overwrites a file)")
    .option("-y, --yes", "take the defaults for what the flags do not say, ask nothing", false)
    .addOption(new Option("--backend <name>", "backend of the first test (default local)").choices(["local", "qemu", "debian"]))
    .addOption(new Option("--ci <name>", "CI workflow to write (default github)").choices(["github", "gitlab", "none"]))
    .action(async (opts: { yes: boolean; backend?: "local" | "qemu" | "debian"; ci?: "github" | "gitlab" | "none" }) => {
      const { initCommand } = await import("./commands/init.ts");
      status = await initCommand({ cwd: process.cwd(), yes: opts.yes, backend: opts.backend, ci: opts.ci });
    });

  program
    .command("repl")
    .description("the interactive driver: load a test's nodes, start nothing, and open a REPL with its machines bound")
    .argument("<file>", "a test file (*.vmtest.ts, .mts, .cts, .js, .mjs, .cjs)")
    .addOption(new Option("--backend <name>", "backend of nodes that name none").choices(["local", "qemu"]).default("local"))
    .addOption(new Option("--accel <accel>", "qemu accelerator").choices(["auto", "kvm", "tcg"]).default("auto"))
    .option("--ssh-backdoor", "give every machine an SSH socket")
    .option("--log-dir <dir>", "where consoles go (default .haltpoint/repl/<timestamp>)")
    .action(async (file: string, opts: { backend: "local" | "qemu"; accel: "auto" | "kvm" | "tcg"; sshBackdoor?: boolean; logDir?: string }) => {
      const { replCommand } = await import("./commands/repl.ts");
      status = await replCommand({ file, backend: opts.backend, accel: opts.accel, sshBackdoor: opts.sshBackdoor, logDir: opts.logDir });
    });

  program
    .command("merge")
    .description("merge JSON reports (e.g. of --shard K/N runs) into one summary, JUnit and JSON report, and exit status")
    .argument("<reports...>", "JSON reports written by haltpoint run --json")
    .option("--junit <file>", "write the merged JUnit XML report")
    .option("--json <file>", "write the merged JSON report")
    .option("--html <file>", "write one HTML report for all the reports")
    .option("--flaky-fails", "a FLAKY run fails the suite (also on when any report was made with it)", false)
    .option("--allow-missing-shards", "merge even if some shards of a --shard run have no report", false)
    .option("--pass-with-no-tests", "reports holding no test pass (else exit status 4; also on when any report was made with it)", false)
    .action(async (reports: string[], opts: { junit?: string; json?: string; html?: string; flakyFails: boolean; allowMissingShards: boolean; passWithNoTests: boolean }) => {
      const { mergeCommand } = await import("./commands/merge.ts");
      status = await mergeCommand({ reports, junit: opts.junit, json: opts.json, html: opts.html, flakyFails: opts.flakyFails, allowMissingShards: opts.allowMissingShards, passWithNoTests: opts.passWithNoTests });
    });
  const queue = program.command("queue").description("a queue of runs shared by many hosts (haltpoint run --queue redis://HOST:PORT/NAME)");
  queue
    .command("report")
    .description("wait until the queue's runs are done, then write the merged report; exit status that of the whole suite (as haltpoint merge)")
    .argument("<redis-url>", "redis://[:PASSWORD@]HOST:PORT/NAME, as given to haltpoint run --queue")
    .option("--junit <file>", "write the merged JUnit XML report")
    .option("--json <file>", "write the merged JSON report")
    .option("--html <file>", "write one HTML report for every host's runs")
    .option("--timeout <duration>", "give up waiting after this long (exit 2)", duration("--timeout"))
    .addOption(new Option("--host-wait <duration>", "with runs left and no host alive this long, report the runs of the hosts that died as lost and the rest as not run (exit 1)").argParser(duration("--host-wait")).default(60, "60s"))
    .action(async (address: string, opts: { junit?: string; json?: string; html?: string; timeout?: number; hostWait: number }) => {
      const { queueReportCommand } = await import("./queue/report-collector.ts");
      status = await queueReportCommand({ address, junit: opts.junit, json: opts.json, html: opts.html, hostWaitMs: opts.hostWait * 1000, ...(opts.timeout ? { waitMs: opts.timeout * 1000 } : {}) });
    });
  program
    .command("ls")
    .description("list the tests halted at a breakpoint, across every haltpoint run on this host")
    .action(async () => {
      const { lsCommand } = await import("./commands/control.ts");
      status = await lsCommand();
    });
  program
    .command("attach")
    .description("open a halted test's console (a JavaScript REPL inside its worker)")
    .argument("<id>", "breakpoint id, as `haltpoint ls` shows")
    .action(async (id: string) => {
      const { attachCommand } = await import("./commands/control.ts");
      status = await attachCommand(id);
    });
  program
    .command("ssh")
    .description("ssh into a machine of a halted test (put -- before ssh options or a command: haltpoint ssh ID server -- -tt top)")
    .argument("<id>", "breakpoint id, as `haltpoint ls` shows")
    .argument("<machine>", "machine name")
    .argument("[args...]", "passed to ssh after the host: options, a command")
    .allowUnknownOption()
    .action(async (id: string, machine: string, args: string[]) => {
      const { sshCommand } = await import("./commands/ssh.ts");
      status = await sshCommand(id, machine, args);
    });
  program
    .command("proxy")
    .description("ssh ProxyCommand for a machine's SSH socket: ssh -o ProxyCommand='haltpoint proxy SOCKET' root@MACHINE")
    .argument("<socket>", "a <machine>_host.socket")
    .argument("[port]", "the machine's port (default 22)", port("port"))
    .option("--raw", "skip the CONNECT handshake (the socket then assumes port 22)", false)
    .action(async (socket: string, p: number | undefined, opts: { raw: boolean }) => {
      const { proxyCommand } = await import("./commands/ssh.ts");
      status = await proxyCommand(socket, p ?? 22, { raw: opts.raw });
    });
  program
    .command("save")
    .description("save a halted test as a bundle (its machines' memory and devices, consoles, the error): it stays halted; `haltpoint revive` brings it back, here or elsewhere")
    .argument("<id>", "breakpoint id, as `haltpoint ls` shows")
    .option("--out <dir>", "the bundle directory to write (default ./haltpoint-bundle-<run>-<id>)")
    .option("--sign-key <file>", "sign it with this ed25519 private key (PEM) instead of your own")
    .action(async (id: string, opts: { out?: string; signKey?: string }) => {
      const { saveCommand } = await import("./commands/control.ts");
      status = await saveCommand(id, opts.out, opts.signKey);
    });
  program
    .command("revive")
    .description("bring a saved breakpoint back: its machines restored frozen as they were, with a console and SSH sockets as a live breakpoint has")
    .argument("<bundle>", "a bundle directory (from --save-breakpoints or haltpoint save)")
    .addOption(new Option("--debug-port <port>", "first TCP port for the console").argParser(port("--debug-port")).default(4444))
    .option("--freeze-ttl <duration>", "release it after this long (e.g. 30m, 90s)", duration("--freeze-ttl"), 30 * 60)
    .option("--log-dir <dir>", "where the revived run's logs go (default .haltpoint/runs/<timestamp>)")
    .option("--trust-key <files...>", "ed25519 public keys (PEM) whose signed bundles revive (your own key is always trusted)")
    .option("--allow-unsigned", "revive a bundle that is unsigned, or signed by a key not trusted (it is untrusted input: docs/security.md)", false)
    .action(async (bundle: string, opts: { debugPort: number; freezeTtl: number; logDir?: string; trustKey?: string[]; allowUnsigned: boolean }) => {
      const { reviveCommand } = await import("./commands/revive.ts");
      status = await reviveCommand({ bundle, debugPort: opts.debugPort, freezeTtl: opts.freezeTtl, logDir: opts.logDir, trustKeys: opts.trustKey, allowUnsigned: opts.allowUnsigned });
    });
  program
    .command("release")
    .description("release a halted test (it then fails and tears down), or all of them")
    .argument("[id]", "breakpoint id, as `haltpoint ls` shows")
    .option("--all", "release every halted test on this host", false)
    .action(async (id: string | undefined, opts: { all: boolean }) => {
      if (!id && !opts.all) throw new UsageError("release needs a breakpoint id or --all");
      const { releaseCommand } = await import("./commands/control.ts");
      status = await releaseCommand(opts.all ? { all: true } : id!);
    });
  const image = program.command("image").description("haltpoint's default guest image");
  image
    .command("build")
    .description("build (or reuse) the guest kernel + initramfs from Debian packages")
    .option("--cache-dir <dir>", "image cache root (default $XDG_CACHE_HOME/haltpoint/images)")
    .option("--force", "rebuild even if the cache has it", false)
    .option("--debian [packages]", "a Debian systemd guest (as root) with these comma-separated packages, as node option image: { packages } asks")
    .option("--start-script <dir>", "with --debian: also write a NixOS-style run-<name>-vm start script (node option startScript) into <dir>")
    .option("--name <name>", "with --start-script: the machine name in run-<name>-vm (default debian)")
    .option("--disk <file>", "with --debian: also write a raw disk that boots through extlinux (node option diskImage)")
    .action(async (opts: { cacheDir?: string; force: boolean; debian?: string | boolean; startScript?: string; name?: string; disk?: string }) => {
      if ((opts.startScript || opts.disk) && opts.debian === undefined) throw new UsageError("image build: --start-script and --disk go with --debian");
      const { imageBuildCommand } = await import("./commands/image.ts");
      const debian = opts.debian === undefined ? undefined : opts.debian === true ? [] : String(opts.debian).split(",").map((p) => p.trim()).filter(Boolean);
      status = await imageBuildCommand({ cacheDir: opts.cacheDir, force: opts.force, debian, startScript: opts.startScript, name: opts.name, disk: opts.disk });
    });
  image
    .command("list")
    .description("the cached guest images: the default one and the Debian ones, with their packages")
    .option("--cache-dir <dir>", "image cache root (default $XDG_CACHE_HOME/haltpoint/images)")
    .action(async (opts: { cacheDir?: string }) => {
      const { imageListCommand } = await import("./commands/image.ts");
      status = await imageListCommand({ cacheDir: opts.cacheDir });
    });
  image
    .command("prune")
    .description("remove every cached guest image but the current one, and Debian images unused for 30 days")
    .option("--cache-dir <dir>", "image cache root (default $XDG_CACHE_HOME/haltpoint/images)")
    .option("--debian", "remove every Debian image too", false)
    .action(async (opts: { cacheDir?: string; debian: boolean }) => {
      const { imagePruneCommand } = await import("./commands/image.ts");
      status = await imagePruneCommand({ cacheDir: opts.cacheDir, allDebian: opts.debian });
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
