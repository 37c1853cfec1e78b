// Machines taken ahead (worker/machines-ahead.ts) on real guests: a flake hunt's worker starts
// the next run's machines while a run runs; the next run takes them (individuals, their log,
// console and processes handed over), a run of another file releases them and says so, a set
// nobody takes goes after its idle time, and a hunt that stops leaves no QEMU or directory.
// The worker's part runs here in-process (runTest, as a worker thread runs it), the main
// thread's through the CLI.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { MessageChannel } from "node:worker_threads";
import type { RunTask, WorkerEvent } from "../common/events.ts";
import { runTest } from "../worker/run-test.ts";
import { ProcessLedger } from "../orchestrator/scheduling/process-ledger.ts";
import { haltpoint } from "./helpers/cli.ts";
import { qemuProcesses, qemuRuntime } from "./helpers/qemu.ts";
import { emptied, settled } from "./helpers/settled.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

const HUNT = resolve("test/fixtures/take-ahead/hunt.vmtest.ts");
const OTHER = resolve("test/fixtures/take-ahead/other.vmtest.ts");
const root = tempDir("hp-ahead-");
const channel = `haltpoint test: machines taken ahead ${root}`;
const ledger = new ProcessLedger();
const stopListening = ledger.listenForAhead(channel);
let seq = 0;

after(async () => {
  stopListening();
  ledger.killAll();
  assert.deepEqual(await emptied(qemuProcesses), [], "no QEMU outlives the tests");
});

interface Facts {
  run: number;
  epoch: number;
  random: string;
  hostBeforeMs: number;
  hostAfterMs: number;
}

/** One run in this thread, as a worker runs it; its events once `done` has arrived. */
async function runTask(file: string, ahead?: { idleMs?: number }) {
  const { port1, port2 } = new MessageChannel();
  const events: WorkerEvent[] = [];
  const done = new Promise<void>((r) =>
    port1.on("message", (e: WorkerEvent) => {
      events.push(e);
      if (e.t === "done") r();
    }),
  );
  const n = ++seq;
  const logDir = join(root, `logs-${n}`);
  const task: RunTask = {
    kind: "run",
    file,
    runIndex: n,
    defaultBackend: "local",
    logDir,
    stateDir: join(root, String(n)),
    debugHook: false,
    qemu: await qemuRuntime(),
    ...(ahead ? { ahead: { channel, ...ahead } } : {}),
    port: port2,
  };
  const outcome = await runTest(task);
  await done;
  port1.close();
  const lines = events.flatMap((e) => (e.t === "log" ? [`${e.machine ? `${e.machine}: ` : ""}${e.msg}`] : []));
  const facts = lines.flatMap((l) => (l.startsWith("AHEAD-FACTS ") ? [JSON.parse(l.slice(12)) as Facts] : []));
  const pids = events.flatMap((e) => (e.t === "process" && e.alive ? [e.pid] : []));
  return { outcome, lines, all: lines.join("\n"), facts, pids, logDir };
}

const aheadDirs = () => readdirSync(root).filter((d) => d.startsWith("ahead-"));

test("the next run of the test takes the machines started while the run before it ran: individuals, with their log, console and processes", async () => {
  const first = await runTask(HUNT, {});
  assert.equal(first.outcome, "passed", first.all);
  assert.doesNotMatch(first.all, /machines taken ahead/, "the first run made its own");
  // The next run's guest, held for no run yet: its QEMU is in the main thread's ledger, under the worker.
  await settled(() => ledger.size, (n) => n === 1, 120_000);
  assert.equal(ledger.size, 1, "the QEMU taken ahead is in the ledger before any run takes it");
  assert.equal((await qemuProcesses()).length, 1, "only the guest taken ahead runs between the runs");

  const second = await runTask(HUNT);
  assert.equal(second.outcome, "passed", second.all);
  assert.match(second.all, /machines taken ahead: vm, started while the run before this one ran \((up \d+\.\d\d s before this run began|this run waited \d+\.\d\d s for them)\)/);
  // Its start's lines are this run's, and say what a start says.
  assert.match(second.all, /vm: starting qemu \([^)]*\)\nvm: backdoor shell ready/);
  assert.equal(second.pids.length, 1, `its QEMU is handed to this run's ledger: ${second.pids}`);
  assert.equal(ledger.size, 0, "and taken out of the ledger's entry for machines taken ahead");
  // Its console log is in this run's log directory, with this run's output (what it printed
  // before the run began is written there first: test/unit/console-attach.test.ts).
  const consoleOf = (r: { logDir: string }) => readFileSync(join(r.logDir, "vm.console.log"), "utf8");
  assert.ok(existsSync(join(second.logDir, "vm.console.log")), "its console is in this run's log directory");
  assert.match(consoleOf(second), new RegExp(`^AHEAD-CONSOLE-${second.facts[0]?.run}$`, "m"));
  assert.doesNotMatch(consoleOf(second), new RegExp(`AHEAD-CONSOLE-${first.facts[0]?.run}\\b`), "and not the run before's");
  // An individual, as a guest started for the run: its own randomness, the host's clock at its first command.
  const [a, b] = [first.facts[0]!, second.facts[0]!];
  assert.ok(a && b, second.all);
  assert.notEqual(a.random, b.random, "/dev/urandom differs between the runs");
  assert.ok(b.epoch >= Math.floor(b.hostBeforeMs / 1000) - 1 && b.epoch <= Math.ceil(b.hostAfterMs / 1000) + 1, `the guest's clock (${b.epoch}) is the host's (${b.hostBeforeMs / 1000}–${b.hostAfterMs / 1000}) within a second`);
  // No run asked for the one after it: nothing is left.
  assert.deepEqual(await emptied(qemuProcesses), []);
  assert.deepEqual(aheadDirs(), [], "the machines' state directory went with their run");
});

test("a run of another file releases the machines taken ahead, and says so", async () => {
  const first = await runTask(HUNT, {});
  assert.equal(first.outcome, "passed", first.all);
  assert.equal(await settled(() => ledger.size, (n) => n === 1, 120_000), 1, "a guest was taken ahead");
  const other = await runTask(OTHER);
  assert.equal(other.outcome, "passed", other.all);
  assert.match(other.all, /released the machines taken ahead \(they were for .*hunt\.vmtest\.ts\)/);
  assert.deepEqual(await emptied(qemuProcesses), [], "their QEMU is gone");
  assert.equal(ledger.size, 0, "and out of the ledger");
  assert.deepEqual(aheadDirs(), [], "and their state directory");
});

test("machines taken ahead that no run takes go after the idle time", async () => {
  const first = await runTask(HUNT, { idleMs: 2000 });
  assert.equal(first.outcome, "passed", first.all);
  assert.equal(await settled(() => ledger.size, (n) => n === 1, 120_000), 1, "a guest was taken ahead");
  assert.deepEqual(await emptied(qemuProcesses, 120_000), [], "the unused guest is torn down without another run");
  assert.equal(await settled(() => ledger.size, (n) => n === 0), 0, "and leaves the ledger");
  assert.deepEqual(await settled(aheadDirs, (d) => d.length === 0), [], "and its state directory goes");
});

/** hp-* state roots under the bases makeStateRoot uses. */
const stateRoots = () => ["/var/tmp", tmpdir()].flatMap((b) => readdirSync(b).filter((d) => /^hp-[a-z0-9]{6}$/.test(d)).map((d) => join(b, d)));

test("a hunt through the CLI: runs take their machines ahead; the run that broke is saved as a bundle; stopped there, it leaves no QEMU or state directory; --no-take-ahead turns it off", async () => {
  const rootsBefore = new Set(stateRoots());
  const logs = join(root, "cli");
  const bundles = join(root, "bundles");
  const r = await haltpoint(["run", HUNT, "--repeat", "4", "--jobs", "1", "--until-fail", "--debug-hook", "--save-breakpoints", bundles, "--log-dir", logs], { env: { HP_AHEAD_FAIL: "2" }, timeout: 600_000 });
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.all, /ahead-hunt#2: machines taken ahead: vm, started while the run before this one ran/);
  // The run that broke, on a guest taken ahead, is saved as any halted run is: with its console as its run logged it.
  const bundle = /ahead-hunt#2: saved as a bundle: (\S+) \(/.exec(r.all)?.[1];
  assert.ok(bundle && existsSync(join(bundle, "bundle.json")), r.all);
  const runConsole = readFileSync(join(logs, "ahead-hunt#2", "vm.console.log"), "utf8");
  assert.match(runConsole, /^AHEAD-CONSOLE-2$/m);
  assert.equal(readFileSync(join(bundle, "vm", "console.log"), "utf8"), runConsole);
  assert.doesNotMatch(r.all, /ahead-hunt#1: machines taken ahead/);
  assert.match(r.all, /run 2 fails, as planned/);
  assert.doesNotMatch(r.all, /ahead-hunt#3/, "--until-fail: nothing after the failure");
  // Run 2 made run 3's guest, which no run took: the hunt's end took it down.
  assert.deepEqual(await emptied(qemuProcesses), [], "no QEMU outlives the hunt");
  assert.deepEqual(stateRoots().filter((d) => !rootsBefore.has(d)), [], "no state directory outlives it");

  const off = await haltpoint(["run", HUNT, "--repeat", "2", "--jobs", "1", "--no-take-ahead", "--log-dir", join(root, "cli-off")], { timeout: 600_000 });
  assert.equal(off.exitCode, 0, off.all);
  assert.doesNotMatch(off.all, /taken ahead/);
  assert.equal((off.all.match(/vm: backdoor shell ready/g) ?? []).length, 2, "each run started its own guest");
});
