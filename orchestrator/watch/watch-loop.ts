// `haltpoint run --watch`: run the selection, then run again the tests a change touches.
// Each run of the suite is one runCommand (its own worker pool, so a changed file is loaded
// afresh: a worker's module cache never forgets a file). A change to a file of the run in
// flight stops that run (scheduler.stop: breakpoints released, machines torn down, results
// marked superseded) and starts the next one with its tests and the changed ones; a change
// touching only other tests waits for the run in flight to end. The qemu image and
// accelerator are prepared once, and machines start from snapshots, so a rerun of one guest
// takes seconds.
import { existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { TEST_FILE_RE } from "../../common/test-files.ts";
import { UsageError, discoverTestFiles } from "../selection/discovery.ts";
import type { StopCause } from "../../common/failure-kinds.ts";
import type { Reporter } from "../report-events.ts";
import { runCommand } from "../commands/run.ts";
import { type RunOptions, defaultLogDir } from "../commands/run-options.ts";
import type { QemuRuntime } from "../../vm/qemu/qemu-machine.ts";
import { ChangeDebouncer } from "./change-debouncer.ts";
import { DirectoryWatcher, directoriesUnder } from "./file-watcher.ts";
import { ImportGraph } from "./import-graph.ts";
import { KEY_HELP, KEY_HELP_LONG, KeyInput, type WatchKey } from "./key-input.ts";

export interface WatchOptions {
  /** Everything a run takes but its paths, its stop signal and its log dir (one per run). */
  run: Omit<RunOptions, "paths" | "stop" | "logDir">;
  /** The selection: files and directories (default: .). */
  paths: string[];
  /** --log-dir: each run gets a numbered directory in it (default: a new .haltpoint/runs/<timestamp> each). */
  logDir?: string;
  input?: NodeJS.ReadStream;
  out?: (line: string) => void;
  /** How long file events must be quiet before a rerun (default 150 ms). */
  quietMs?: number;
}

interface Cycle {
  files: Set<string>;
  stop: AbortController;
  done: Promise<void>;
}

/** Resolves with the exit status when the user quits (q, Ctrl-C, SIGTERM). */
export async function watchCommand(o: WatchOptions): Promise<number> {
  const out = o.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const roots = (o.paths.length ? o.paths : ["."]).map((p) => resolve(p));
  const rel = (f: string): string => relative(process.cwd(), f) || f;
  const list = (files: Iterable<string>): string => {
    const all = [...files].sort().map(rel);
    return all.length > 6 ? `${all.slice(0, 6).join(", ")} and ${all.length - 6} more` : all.join(", ");
  };
  const graph = new ImportGraph();
  const failed = new Set<string>();
  let lastSelection = new Set<string>();
  let current: Cycle | undefined;
  let next: { files: Set<string>; why: string } | undefined;
  let qemu: QemuRuntime | undefined;
  let cycleNo = 0;
  let quitting: { status: number } | undefined;
  let resolveQuit!: (status: number) => void;
  const quit = new Promise<number>((r) => (resolveQuit = r));

  const isUnderRoots = (f: string): boolean => roots.some((r) => f === r || f.startsWith(`${r}/`));

  const refreshWatch = async (): Promise<void> => {
    const dirs = new Set(await directoriesUnder(roots));
    for (const f of graph.allFiles()) dirs.add(dirname(f));
    watcher.set(dirs);
  };

  const start = (files: Set<string>, why: string): void => {
    if (!files.size) return void out(`\nwatch: no test files in ${list(roots)}; waiting for one to appear (${keysOn ? KEY_HELP : "file changes only"})`);
    lastSelection = files;
    cycleNo++;
    const stop = new AbortController();
    out(`\nwatch: ${why} → running ${files.size === 1 ? "1 test file" : `${files.size} test files`}: ${list(files)}`);
    const ran = new Map<string, boolean>();
    const collector: Reporter = {
      report(e) {
        if (e.kind === "plan") for (const l of e.plan.loadErrors) ran.set(resolve(l.file), false);
        else if (e.kind === "run-end") {
          const f = resolve(e.result.run.test.file);
          ran.set(f, (ran.get(f) ?? true) && e.result.outcome !== "failed");
        }
      },
    };
    const logDir = o.logDir ? join(o.logDir, `watch-${cycleNo}`) : defaultLogDir();
    const done = runCommand({
      ...o.run,
      paths: [...files],
      logDir,
      stop: stop.signal,
      live: false,
      passWithNoTests: true,
      reporters: [...(o.run.reporters ?? []), collector],
      ...(qemu ? { previousQemu: qemu } : {}),
      onQemuRuntime: (rt) => (qemu = rt),
    })
      .then((status) => {
        if (status === 130 && !stop.signal.aborted) quitNow(130);
      })
      .catch((e: unknown) => out(`watch: ${e instanceof UsageError ? e.message : (e as Error).stack ?? String(e)}`))
      .finally(() => {
        // Superseded runs are neither passed nor failed: they run again next.
        if (!stop.signal.aborted) for (const [f, ok] of ran) ok ? failed.delete(f) : failed.add(f);
        else for (const [f, ok] of ran) if (!ok && !next?.files.has(f)) failed.add(f);
        current = undefined;
        if (quitting) return;
        if (next) {
          const n = next;
          next = undefined;
          start(n.files, n.why);
        } else out(`\nwatch: waiting for changes (${keysOn ? KEY_HELP : "no terminal: file changes only"})`);
      });
    current = { files, stop, done };
  };

  /** Run `files` for `why`: now, or after the run in flight (stopping it first when `supersede` or when it runs one of them). */
  const request = (files: Set<string>, why: string, o2: { supersede: boolean; replace: boolean }): void => {
    if (quitting) return;
    if (!current) return start(files, why);
    const touches = [...files].some((f) => current!.files.has(f));
    if (o2.supersede || touches) {
      const union = o2.replace ? files : new Set([...current.files, ...files, ...(next?.files ?? [])]);
      next = { files: union, why };
      if (!current.stop.signal.aborted) {
        out(`watch: ${why} while its run is in flight → stopping that run, then running ${list(union)}`);
        current.stop.abort({ kind: "superseded", by: why } satisfies StopCause);
      }
    } else {
      next = { files: new Set([...(next?.files ?? []), ...files]), why: next ? `${next.why}; ${why}` : why };
      out(`watch: ${why} → ${list(files)} queued after the run in flight`);
    }
  };

  const onChanges = async (paths: string[]): Promise<void> => {
    if (quitting) return;
    const affected = new Set(graph.affectedBy(paths));
    // New test files under the selection run too; deleted ones leave the graph.
    for (const p of paths) {
      if (TEST_FILE_RE.test(p) && isUnderRoots(p) && existsSync(p)) affected.add(p);
    }
    const gone = [...affected].filter((f) => !existsSync(f));
    for (const f of gone) affected.delete(f);
    if (gone.length) graph.keepOnly(graph.tests.filter((t) => !gone.includes(t)));
    const changed = paths.filter((p) => existsSync(p) || gone.includes(p) || graph.allFiles().has(p));
    if (!affected.size) {
      if (gone.length) await refreshWatch();
      return;
    }
    // Read again the imports of the tests it touches: an edit may have added or dropped one.
    for (const e of await graph.update(affected)) out(`watch: cannot read the imports of ${rel(e.file)} (${e.error}): it reruns on its own changes until it parses`);
    await refreshWatch();
    const what = changed.length ? `${list(changed)} changed` : "a file changed";
    request(affected, what, { supersede: false, replace: false });
  };

  const quitNow = (status: number): void => {
    if (quitting) return;
    quitting = { status };
    out("watch: quitting");
    current?.stop.abort({ kind: "interrupted" } satisfies StopCause);
    next = undefined;
    resolveQuit(status);
  };

  const onKey = async (k: WatchKey): Promise<void> => {
    if (k === "quit") return quitNow(0);
    if (k === "help") return void out(KEY_HELP_LONG.join("\n"));
    if (k === "all") {
      const all = await allTestFiles();
      if (all) request(new Set(all), "a pressed (all tests)", { supersede: true, replace: true });
    } else if (k === "failed") {
      if (!failed.size) return void out("watch: no failed tests to rerun (f)");
      request(new Set(failed), "f pressed (failed tests)", { supersede: true, replace: true });
    } else request(new Set(lastSelection), "Enter pressed (the last selection)", { supersede: true, replace: true });
  };

  const allTestFiles = async (): Promise<string[] | undefined> => {
    try {
      const all = await discoverTestFiles(roots);
      graph.keepOnly(all);
      await graph.update(all.filter((f) => !graph.tests.includes(f)));
      await refreshWatch();
      return all;
    } catch (e) {
      out(`watch: ${(e as Error).message}`);
      return undefined;
    }
  };

  const debouncer = new ChangeDebouncer(o.quietMs ?? 150, (paths) => void onChanges(paths));
  const watcher = new DirectoryWatcher(
    (p) => debouncer.add(p),
    (dir, message) => out(`watch: stopped watching ${rel(dir)}: ${message}`),
  );
  const keys = new KeyInput(o.input ?? process.stdin, (k) => void onKey(k));
  const onSignal = (sig: NodeJS.Signals): void => quitNow(sig === "SIGINT" ? 130 : 143);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let keysOn = false;
  try {
    const all = await discoverTestFiles(roots);
    for (const e of await graph.update(all)) out(`watch: cannot read the imports of ${rel(e.file)} (${e.error})`);
    await refreshWatch();
    keysOn = keys.start();
    start(new Set(all), "first run");
    const status = await quit;
    // The run in flight was stopped: wait for its teardown (nothing left behind).
    await current?.done;
    return status;
  } finally {
    keys.close();
    debouncer.close();
    watcher.close();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
