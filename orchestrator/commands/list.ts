// `haltpoint list`: the tests a run with the same selection would run — after --filter,
// --rerun-failed and --shard, with the settings from the command line, the environment and
// the config file — without running them. `--json` prints them for scripts (format
// `haltpoint-list` version 1).
import { availableParallelism } from "node:os";
import { discoverTestFiles } from "../selection/discovery.ts";
import { collectTests } from "../scheduling/collect-tests.ts";
import { findDuplicateNames } from "../selection/plan.ts";
import { createPool } from "../scheduling/pool.ts";
import { selectTests, type ShardSpec } from "../selection/selection.ts";
import { applyTestSettings, type SettingLayers } from "../settings/test-settings.ts";
import { formatShard } from "../selection/shard.ts";
import { NO_TESTS_EXIT_STATUS } from "../results.ts";
import { bestEffort, stderrTeardownLog } from "../../common/teardown.ts";

export const LIST_FORMAT = "haltpoint-list";

export interface ListOptions {
  paths: string[];
  backend: string;
  filter?: RegExp;
  shard?: ShardSpec;
  durations?: string[];
  rerunFailed?: string;
  passWithNoTests?: boolean;
  json: boolean;
  testSettings?: SettingLayers;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream;
  env?: NodeJS.ProcessEnv;
}

export interface ListedTest {
  name: string;
  file: string;
  nodes: { name: string; backend: string; memory: number; cores: number }[];
  retries: number;
  /** Seconds (globalTimeout, or --timeout). */
  timeout: number;
  slowTimeout: number | null;
  /** The run numbers --rerun-failed would run again. */
  runs?: number[];
}

/** Resolves with the exit status: 0, 2 (a file that cannot load), 4 (no test selected). */
export async function listCommand(o: ListOptions): Promise<number> {
  const out = o.out ?? process.stdout;
  const err = o.err ?? process.stderr;
  const paths = o.paths.length ? o.paths : ["."];
  const files = await discoverTestFiles(paths);
  const threads = Math.min(Math.max(files.length, 1), availableParallelism());
  const pool = createPool({ threads });
  let collected;
  try {
    collected = await collectTests(pool, files, o.backend, threads);
  } finally {
    await bestEffort(stderrTeardownLog, "stopping the worker pool", pool.destroy());
  }
  const loadErrors = [...collected.loadErrors, ...findDuplicateNames(collected.tests)];
  const runnable = collected.tests.filter((t) => !loadErrors.some((e) => e.file === t.file));
  const tests = applyTestSettings(runnable, o.testSettings ?? { strong: {}, overrides: [], weak: {} });
  const sel = await selectTests(tests, { filter: o.filter, shard: o.shard, durations: o.durations, rerunFailed: o.rerunFailed, where: paths.join(", "), env: o.env });
  const runsOf = (name: string): number[] | undefined => sel.runs?.filter((r) => r.test.name === name).map((r) => r.index);
  const listed: ListedTest[] = sel.tests.map((t) => ({
    name: t.name,
    file: t.file,
    nodes: t.nodes.map((n) => ({ name: n.name, backend: n.backend, memory: n.memory, cores: n.cores })),
    retries: t.retries ?? 0,
    timeout: t.globalTimeout,
    slowTimeout: t.slowTimeout ?? null,
    ...(sel.runs ? { runs: runsOf(t.name)! } : {}),
  }));
  for (const n of sel.notices) err.write(`haltpoint: ${n}\n`);
  for (const e of loadErrors) err.write(`haltpoint: ${e.error}\n`);
  const empty = !listed.length && !loadErrors.length;
  if (empty) err.write(`haltpoint: no test selected: ${sel.emptyReason ?? "none"}${o.passWithNoTests ? "" : ` (exit status ${NO_TESTS_EXIT_STATUS}; --pass-with-no-tests allows it)`}\n`);
  if (o.json) {
    out.write(JSON.stringify({ format: LIST_FORMAT, version: 1, shard: sel.shard ?? null, tests: listed, loadErrors }, null, 2) + "\n");
  } else {
    for (const t of listed) {
      const nodes = t.nodes.length ? t.nodes.map((n) => `${n.name} (${n.backend}${n.backend === "qemu" ? `, ${n.memory} MiB, ${n.cores} core${n.cores === 1 ? "" : "s"}` : ""})`).join(", ") : "no machines";
      const extra = [t.retries ? `retries ${t.retries}` : "", `timeout ${t.timeout} s`, t.slowTimeout !== null ? `slow after ${t.slowTimeout} s` : "", t.runs ? `runs ${t.runs.join(", ")}` : ""].filter(Boolean);
      out.write(`${t.name}  ${t.file}  ${nodes}; ${extra.join("; ")}\n`);
    }
    const shard = sel.shard ? ` (shard ${formatShard(sel.shard)})` : "";
    err.write(`haltpoint: ${listed.length} test${listed.length === 1 ? "" : "s"}${shard}\n`);
  }
  if (loadErrors.length) return 2;
  return empty && !o.passWithNoTests ? NO_TESTS_EXIT_STATUS : 0;
}
