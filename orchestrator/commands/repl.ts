import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { removeStartupSignalHandlers } from "../startup-signals.ts";
import { register } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { start as startRepl, type REPLEval, type REPLServer } from "node:repl";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { HALTPOINT_INDEX, packageFile } from "../../package-root.ts";
import { pathToFileURL } from "node:url";
import { createMachine } from "../../vm/create-machine.ts";
import type { BaseMachine, MachineContext } from "../../vm/machine.ts";
import type { RunNetwork } from "../../vm/qemu/run-network.ts";
import type { QemuRuntime } from "../../vm/qemu/qemu-runtime.ts";
import type { SshBackdoor } from "../../hooks/ssh/ssh-backdoor.ts";
import { DriverApi } from "../../worker/driver-api.ts";
import type { WorkerEvent } from "../../common/events.ts";
import { loadTestFile } from "../../worker/load-test-file.ts";
import { buildTestContext } from "../../worker/test-context.ts";
import { debianImagesOf, prepareQemu } from "../scheduling/prepare-qemu.ts";
import { bestEffort, stderrTeardownLog } from "../../common/teardown.ts";

// `haltpoint repl FILE`, NixOS's interactive driver (driverInteractive): the test's nodes
// are built but nothing starts and the script does not run; a REPL in the terminal has the
// machines bound, startAll(), testScript(), and the driver calls. Ctrl-D or .exit tears
// every machine down and removes the state directory.

export interface ReplCommandOptions {
  file: string;
  backend: "local" | "qemu";
  accel: "auto" | "kvm" | "tcg";
  sshBackdoor?: boolean;
  logDir?: string;
  input?: Readable;
  output?: Writable;
}

export async function replCommand(o: ReplCommandOptions): Promise<number> {
  const out = o.output ?? process.stdout;
  const print = (line: string): void => void out.write(`${line}\n`);
  const file = resolve(o.file);
  if (!existsSync(file)) {
    print(`haltpoint repl: no such file: ${o.file}`);
    return 2;
  }
  // Test files are TypeScript, loaded here in the main thread (run loads them in workers).
  const { register: registerTsx } = await import("tsx/esm/api");
  registerTsx();
  // A test file's `import "haltpoint"` gets the copy this process runs (dist/ or sources)
  // (the same hook the workers use; the .mjs is shipped beside the sources, not in dist/).
  register(pathToFileURL(packageFile("worker/resolve-haltpoint.mjs")), { data: { haltpointIndex: HALTPOINT_INDEX } });
  let test;
  try {
    test = await loadTestFile(file, o.backend);
  } catch (e) {
    print(`haltpoint repl: ${(e as Error).message.split("\n")[0]}`);
    return 2;
  }
  let qemu: QemuRuntime | undefined;
  if (test.nodes.some((n) => n.backend === "qemu")) {
    try {
      qemu = await prepareQemu(o.accel, (line) => print(`haltpoint: ${line}`), { debian: debianImagesOf(test.nodes, o.file) });
    } catch (e) {
      print(`haltpoint repl: the qemu backend is not ready: ${(e as Error).message.split("\n")[0]}`);
      return 2;
    }
  }

  const logDir = resolve(o.logDir ?? join(".haltpoint", "repl", new Date().toISOString().replace(/[:.]/g, "-")));
  const stateDir = mkdtempSync(join(tmpdir(), "hp-repl-")); // 0700
  const machines: BaseMachine[] = [];
  let network: RunNetwork | undefined;
  let backdoor: SshBackdoor | undefined;
  const emit = (e: WorkerEvent): void => {
    if (e.t === "log") print(`${test.name}${e.machine ? ` ${e.machine}` : ""}: ${e.msg}`);
    else if (e.t === "console") print(`${test.name} ${e.machine}: ${e.line}`);
    else if (e.t === "subtest") print(`${test.name}: subtest ${e.phase === "start" ? "" : `${e.phase} `}${e.name}`);
  };
  const ctx: MachineContext = {
    log: (machine, msg) => emit({ t: "log", time: Date.now(), machine, msg }),
    trackProcess: () => {},
    consolePath: (machine) => join(logDir, `${machine}.console.log`),
    stateDir: (machine) => join(stateDir, machine),
    outputDir: join(logDir, "out"),
    started: (machine) => {
      print(`${test.name} ${machine}: console log: ${join(logDir, `${machine}.console.log`)}`);
      backdoor?.announce(machine);
    },
    aroundCommand: () => driver.conditions.checkAll(),
  };
  let scriptCtx: Record<string, unknown> = {};
  const driver = new DriverApi(machines, ctx, { qemu }, o.backend, emit, (m) => (scriptCtx[m.name] ??= m));
  const teardown = async (): Promise<void> => {
    if (backdoor) await bestEffort(stderrTeardownLog, "closing the ssh backdoor", backdoor.close());
    await Promise.all(machines.map((m) => m.cleanup()));
    if (network) await bestEffort(stderrTeardownLog, "closing the virtual network", network.close());
    rmSync(stateDir, { recursive: true, force: true });
  };
  try {
    if (test.nodes.some((n) => n.backend === "qemu")) {
      const { RunNetwork } = await import("../../vm/qemu/run-network.ts");
      network = new RunNetwork(stateDir, test.nodes);
    }
    for (const node of test.nodes) machines.push(await createMachine(node, ctx, { qemu, network }));
    if (machines.length && (o.sshBackdoor ?? test.sshBackdoor ?? false)) {
      const { SshBackdoor } = await import("../../hooks/ssh/ssh-backdoor.ts");
      backdoor = await SshBackdoor.open(machines, { dir: stateDir, thaws: true, log: ctx.log });
    }
  } catch (e) {
    print(`haltpoint repl: ${(e as Error).message.split("\n")[0]}`);
    await teardown();
    return 2;
  }
  const debug = { breakpoint: async () => print(`${test.name}: debug.breakpoint(): not halting in the repl`) };
  scriptCtx = buildTestContext(machines, 1, emit, debug, 1, driver) as Record<string, unknown>;
  const names = machines.map((m) => `${m.name} (${m.backend})`).join(", ") || "none";
  print(`haltpoint repl: ${test.name} (${o.file}): machines ${names}, none started`);
  print(`in scope: ${[...machines.map((m) => m.name), ...(machines.length === 1 ? ["machine"] : []), "machines", "startAll()", "joinAll()", "testScript()", "subtest()", "retry()", "pollingCondition()", "createMachine()", "serialStdout()", "log()"].join(", ")}`);
  print(`e.g. await startAll(), then await ${machines[0]?.name ?? "machine"}.succeed("uname -a"); Ctrl-D or .exit tears every machine down`);

  const input = o.input ?? process.stdin;
  const terminal = (input as { isTTY?: boolean }).isTTY === true && (out as { isTTY?: boolean }).isTTY === true;
  // A terminal REPL waits for a pending `await` itself; lines from a pipe go through
  // feedLines, one at a time, so a piped script runs in order.
  const server = startRepl({
    prompt: `${test.name}> `,
    input: terminal ? input : new PassThrough(),
    output: out,
    terminal,
    ignoreUndefined: true,
    useGlobal: false,
  });
  const bind = (): void => void Object.assign(server.context, scriptCtx, { testScript: () => test.def.testScript(scriptCtx as never) });
  bind();
  server.on("reset", bind);
  const exited = new Promise<void>((r) => server.once("exit", () => r()));
  if (!terminal) feedLines(server, input);
  const stop = (): void => void server.close();
  removeStartupSignalHandlers();
  process.once("SIGTERM", stop);
  process.once("SIGHUP", stop);
  if (!(input as { isTTY?: boolean }).isTTY) process.once("SIGINT", stop);
  await exited;
  process.off("SIGTERM", stop);
  process.off("SIGHUP", stop);
  process.off("SIGINT", stop);
  print(`haltpoint repl: tearing down ${machines.length} machine${machines.length === 1 ? "" : "s"}`);
  await teardown();
  return 0;
}

/**
 * Give a non-terminal REPL one line at a time, none while an evaluation is pending (the REPL
 * shows its prompt again when one ends, however it ends), and close it after the last one.
 * `server.write` evaluates a line synchronously, so `busy` is set before it returns.
 */
function feedLines(server: REPLServer, input: Readable): void {
  const lines: string[] = [];
  let busy = false;
  let ended = false;
  const evaluate = server.eval;
  (server as { eval: REPLEval }).eval = (code, context, file, cb) => {
    busy = true;
    evaluate.call(server, code, context, file, cb);
  };
  const display = server.displayPrompt.bind(server);
  server.displayPrompt = (preserveCursor?: boolean) => {
    display(preserveCursor);
    if (busy) {
      busy = false;
      queueMicrotask(pump);
    }
  };
  let closed = false;
  server.once("exit", () => (closed = true)); // .exit: the lines after it are not run
  function pump(): void {
    while (!busy && lines.length && !closed) {
      const line = lines.shift()!;
      // .exit closes the REPL, but its "exit" event comes later: stop feeding here.
      if (line.trim() === ".exit") closed = true;
      server.write(`${line}\n`);
    }
    if (!busy && !closed && !lines.length && ended) server.close();
  }
  const rl = createInterface({ input, terminal: false });
  rl.on("line", (l) => {
    lines.push(l);
    pump();
  });
  rl.on("close", () => {
    ended = true;
    pump();
  });
}
