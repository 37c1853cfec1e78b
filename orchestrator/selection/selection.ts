// Which tests (and, for --rerun-failed, which runs) a run or `haltpoint list` takes from
// the loaded suite: --filter, then --rerun-failed, then this machine's --shard (by hash,
// or by durations with --durations). It also says why, when nothing is left: a run that
// selects no test must not pass silently (exit status 4).
import type { PlannedRun, PlannedTest } from "./plan.ts";
import { formatShard, inShard, type Shard } from "./shard.ts";
import { parseAutoShard, shardFromEnv } from "./ci-shard-env.ts";
import { assignByDuration, durationsFromReports } from "./shard-by-duration.ts";
import { UsageError } from "./discovery.ts";
import { seconds } from "../reporters/format.ts";

/** `--shard K/N`, `--shard auto` or `--shard auto/N`. */
export type ShardSpec = Shard | { auto: true; total?: number };

export interface SelectOptions {
  filter?: RegExp;
  shard?: ShardSpec;
  /** Earlier JSON reports whose durations balance the shards (--durations). */
  durations?: string[];
  /** A JSON report whose failed and flaky runs are run again (--rerun-failed). */
  rerunFailed?: string;
  /** What was searched, for the line saying nothing was found. */
  where: string;
  env?: NodeJS.ProcessEnv;
}

export interface Selection {
  tests: PlannedTest[];
  /** --rerun-failed: exactly the runs to make (their original run numbers). */
  runs?: PlannedRun[];
  /** The shard this machine runs (resolved from the CI with `--shard auto`). */
  shard?: Shard;
  /** Lines saying what was decided (which CI variables, which durations). */
  notices: string[];
  /** Why no test is selected, when none is. */
  emptyReason?: string;
}

/** Parse a --shard value: K/N, auto, auto/N. Throws an Error with a one-line message. */
export function parseShardSpec(s: string, parseKN: (s: string) => Shard): ShardSpec {
  const auto = parseAutoShard(s);
  return auto ? { auto: true, ...auto } : parseKN(s);
}

const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? "" : "s"}`;

export async function selectTests(all: PlannedTest[], o: SelectOptions): Promise<Selection> {
  const notices: string[] = [];
  if (!all.length) return { tests: [], notices, emptyReason: `no test file in ${o.where}` };
  let tests = o.filter ? all.filter((t) => o.filter!.test(t.name) || o.filter!.test(t.file)) : all;
  if (!tests.length) return { tests, notices, emptyReason: `--filter ${o.filter} matches none of the ${plural(all.length, "test")}` };

  let runs: PlannedRun[] | undefined;
  if (o.rerunFailed) {
    const { readReport } = await import("../commands/merge.ts"); // loads reporters: only when asked
    const { report } = await readReport(o.rerunFailed);
    const byName = new Map(tests.map((t) => [t.name, t]));
    runs = [];
    const gone: string[] = [];
    for (const t of report.tests) {
      for (const r of t.runs) {
        if (r.outcome === "passed") continue;
        const test = byName.get(t.name);
        if (test) runs.push({ key: r.key, test, index: r.run });
        else gone.push(r.key);
      }
    }
    if (gone.length) notices.push(`--rerun-failed: ${gone.join(", ")} failed in ${o.rerunFailed} but ${gone.length === 1 ? "is" : "are"} not in the suite${o.filter ? " (or --filter)" : ""} now`);
    const names = new Set(runs.map((r) => r.test.name));
    tests = tests.filter((t) => names.has(t.name));
    notices.push(`--rerun-failed: ${plural(runs.length, "failed or flaky run")} of ${plural(tests.length, "test")} from ${o.rerunFailed}`);
    if (!runs.length) return { tests, runs, notices, emptyReason: gone.length ? `none of the failed tests of ${o.rerunFailed} is in the suite` : `${o.rerunFailed} has no failed or flaky run` };
  }

  let shard: Shard | undefined;
  if (o.shard) {
    if ("auto" in o.shard) {
      let ci;
      try {
        ci = shardFromEnv(o.env ?? process.env, o.shard.total);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      shard = ci.shard;
      notices.push(`--shard auto: shard ${formatShard(shard)} from ${ci.source}`);
    } else shard = o.shard;
    const before = tests.length;
    if (o.durations?.length) {
      const { readReport } = await import("../commands/merge.ts");
      const reports = await Promise.all(o.durations.map(async (f) => (await readReport(f)).report));
      const durations = durationsFromReports(reports);
      const a = assignByDuration(tests.map((t) => t.name), durations, shard.total);
      tests = tests.filter((t) => a.shardOf.get(t.name) === shard!.index);
      const measured = before - a.unknown.length;
      notices.push(
        `shard ${formatShard(shard)} by durations from ${plural(o.durations.length, "report")}: ${measured} of ${plural(before, "test")} measured` +
          (a.unknown.length ? `, ${a.unknown.length} new counted as the median ${seconds(a.fallbackMs)}` : "") +
          `; this shard ~${seconds(a.loads[shard.index - 1]!)} of work (shards ${a.loads.map((l) => seconds(l)).join(", ")})`,
      );
    } else tests = inShard(tests, shard);
    if (runs) {
      const names = new Set(tests.map((t) => t.name));
      runs = runs.filter((r) => names.has(r.test.name));
    }
    if (!tests.length) return { tests, runs, shard, notices, emptyReason: `shard ${formatShard(shard)} has none of the ${plural(before, "test")}${o.durations?.length ? "" : " (shards by test-name hash)"}` };
  }
  return { tests, runs, shard, notices };
}
