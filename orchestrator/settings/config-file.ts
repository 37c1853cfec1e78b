// `haltpoint.config.{json,mjs,ts}`: defaults for every `haltpoint run` option, named
// profiles (`--profile ci`, HALTPOINT_PROFILE), and per-test overrides by filter. The keys
// are the run options' own names (camelCase, as commander names them: `maxFail` for
// --max-fail) and each value is checked by that option's own parser, so the file accepts
// exactly what the command line does and says the same when it does not. Anything else is
// an error naming the key and the file.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { readFile } from "node:fs/promises";
import type { Option } from "commander";
import { UsageError } from "../selection/discovery.ts";
import type { TestOverride, TestSettings } from "./test-settings.ts";

export const CONFIG_FILE_NAMES = ["haltpoint.config.json", "haltpoint.config.mjs", "haltpoint.config.ts"] as const;

/** Options that choose the config itself; they cannot be in it. */
const NOT_IN_FILE = new Set(["config", "profile"]);
/** Keys whose values are paths: relative to the config file's directory. */
const PATH_KEYS = new Set(["paths", "logDir", "junit", "json", "html", "durations", "rerunFailed"]);
/** What a per-test override may set. */
const OVERRIDE_KEYS = ["retries", "timeout", "slowTimeout"] as const;

export interface LoadedConfig {
  file: string;
  /** The profile chosen, if any. */
  profile?: string;
  /** Option values (parsed as the command line would), the profile's over the file's defaults. */
  values: Record<string, unknown>;
  /** `paths` to run when the command line names none. */
  paths?: string[];
  /** Per-test overrides, the file's then the profile's (the last match wins). */
  overrides: TestOverride[];
}

/** The config file: `explicit` (--config), else one of CONFIG_FILE_NAMES in `cwd`. */
export function findConfigFile(cwd: string, explicit?: string): string | undefined {
  if (explicit) {
    const f = resolve(cwd, explicit);
    if (!existsSync(f)) throw new UsageError(`--config ${explicit}: no such file`);
    return f;
  }
  const found = CONFIG_FILE_NAMES.map((n) => join(cwd, n)).filter((f) => existsSync(f));
  if (found.length > 1) throw new UsageError(`${found.join(" and ")} both exist: keep one (or choose with --config FILE)`);
  return found[0];
}

async function readConfig(file: string): Promise<unknown> {
  try {
    if (file.endsWith(".json")) return JSON.parse(await readFile(file, "utf8"));
    const url = pathToFileURL(file).href;
    // A .ts config loads through tsx, which haltpoint ships with (the main thread may run from dist/).
    const mod = file.endsWith(".ts") ? await (await import("tsx/esm/api")).tsImport(url, import.meta.url) : await import(url);
    if (!("default" in mod)) throw new Error("it has no default export (export default { … })");
    // A .ts file outside an ESM package loads as CommonJS: its `export default` is then one level down.
    const v = mod.default;
    if (isObject(v) && "default" in v && Object.keys(v).every((k) => k === "default" || k === "__esModule")) return v.default;
    return v;
  } catch (e) {
    throw new UsageError(`${file}: cannot load: ${((e as Error).message ?? String(e)).split("\n")[0]}`);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The closest known key, for "did you mean": same letters ignoring case and dashes, or one edit away. */
function suggest(key: string, known: string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  const exact = known.find((k) => norm(k) === norm(key));
  if (exact) return exact;
  const close = known.find((k) => editDistance(norm(k), norm(key)) <= (key.length >= 5 ? 2 : 1));
  if (close) return close;
  // `retry` for `retries`: the same first letters, if only one key has them.
  const stem = norm(key).slice(0, 4);
  const same = stem.length === 4 ? known.filter((k) => norm(k).startsWith(stem)) : [];
  return same.length === 1 ? same[0] : undefined;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

class ConfigChecker {
  private readonly byKey = new Map<string, Option>();

  constructor(
    private readonly file: string,
    options: readonly Option[],
  ) {
    // Of a --x / --no-x pair the positive option speaks for the key; a lone --no-x is a boolean too.
    for (const o of options) {
      const k = o.attributeName();
      if (NOT_IN_FILE.has(k) || k === "version" || k === "help") continue;
      if (!this.byKey.has(k) || !o.negate) this.byKey.set(k, o);
    }
  }

  private fail(where: string, msg: string): never {
    throw new UsageError(`${this.file}: ${where}: ${msg}`);
  }

  private unknown(where: string, key: string, known: string[]): never {
    if (NOT_IN_FILE.has(key)) this.fail(where, `'${key}' cannot be set in a config file (use --${key} or HALTPOINT_${key.toUpperCase()})`);
    const hint = suggest(key, known);
    this.fail(where, `unknown key '${key}'${hint ? ` (did you mean '${hint}'?)` : ""}`);
  }

  /** One option's value, parsed as the command line would parse it. */
  value(where: string, key: string, v: unknown): unknown {
    const o = this.byKey.get(key)!;
    const flag = o.long ?? key;
    if (!o.required && !o.optional) {
      if (typeof v !== "boolean") this.fail(where, `${flag} is a flag: true or false, got ${JSON.stringify(v)}`);
      return v;
    }
    const parseOne = (x: unknown): unknown => {
      if (typeof x !== "string" && typeof x !== "number") this.fail(where, `${flag} takes a string or number, got ${JSON.stringify(x)}`);
      const s = String(x);
      if (!o.parseArg) return this.path(key, s);
      try {
        return o.parseArg(s, undefined);
      } catch (e) {
        this.fail(where, (e as Error).message.replace(/^error: /, ""));
      }
    };
    if (o.variadic) return (Array.isArray(v) ? v : [v]).map(parseOne);
    if (Array.isArray(v)) this.fail(where, `${flag} takes one value, got a list`);
    return parseOne(v);
  }

  path(key: string, s: string): string {
    return PATH_KEYS.has(key) ? resolve(dirname(this.file), s) : s;
  }

  /** A block of option values: the file's top level or a profile. */
  block(where: string, data: Record<string, unknown>, extra: string[]): { values: Record<string, unknown>; paths?: string[]; overrides: TestOverride[] } {
    const values: Record<string, unknown> = {};
    let paths: string[] | undefined;
    let overrides: TestOverride[] = [];
    const known = [...this.byKey.keys(), "paths", "overrides", ...extra];
    for (const [key, v] of Object.entries(data)) {
      const at = where ? `${where}.${key}` : key;
      if (extra.includes(key)) continue;
      if (key === "paths") {
        if (!Array.isArray(v) || !v.every((p) => typeof p === "string")) this.fail(at, "paths takes a list of files and directories");
        paths = (v as string[]).map((p) => this.path("paths", p));
      } else if (key === "overrides") overrides = this.overrides(at, v);
      else if (this.byKey.has(key)) values[key] = this.value(at, key, v);
      else this.unknown(where || "top level", key, known);
    }
    return { values, ...(paths ? { paths } : {}), overrides };
  }

  overrides(where: string, v: unknown): TestOverride[] {
    if (!Array.isArray(v)) this.fail(where, "overrides takes a list of { filter, retries?, timeout?, slowTimeout? }");
    return v.map((o, i) => {
      const at = `${where}[${i}]`;
      if (!isObject(o)) this.fail(at, "an override is an object { filter, retries?, timeout?, slowTimeout? }");
      if (typeof o.filter !== "string") this.fail(at, "an override needs a filter (a regular expression matched against test names and files)");
      let filter: RegExp;
      try {
        filter = new RegExp(o.filter);
      } catch (e) {
        this.fail(`${at}.filter`, (e as Error).message);
      }
      const out: TestOverride = { filter };
      for (const [key, val] of Object.entries(o)) {
        if (key === "filter") continue;
        if (!(OVERRIDE_KEYS as readonly string[]).includes(key)) {
          const hint = suggest(key, [...OVERRIDE_KEYS, "filter"]);
          this.fail(at, `unknown key '${key}' (an override sets ${OVERRIDE_KEYS.join(", ")})${hint ? ` (did you mean '${hint}'?)` : ""}`);
        }
        (out as unknown as Record<string, unknown>)[key] = this.value(`${at}.${key}`, key, val) as TestSettings[keyof TestSettings];
      }
      return out;
    });
  }
}

/**
 * Load and check a config file against the run command's options. `profile` (from
 * --profile or HALTPOINT_PROFILE) must be one the file defines.
 */
export async function loadConfig(file: string, options: readonly Option[], profile?: string): Promise<LoadedConfig> {
  const data = await readConfig(file);
  if (!isObject(data)) throw new UsageError(`${file}: a config file holds an object of option defaults, got ${Array.isArray(data) ? "a list" : JSON.stringify(data)}`);
  const check = new ConfigChecker(file, options);
  const top = check.block("", data, ["profiles"]);
  const profiles = data.profiles;
  if (profiles !== undefined && !isObject(profiles)) throw new UsageError(`${file}: profiles: an object of profile name → option defaults`);
  // Every profile is checked, not only the chosen one: a typo in `ci` fails on a laptop too.
  const checked = new Map(Object.entries(profiles ?? {}).map(([name, p]) => {
    if (!isObject(p)) throw new UsageError(`${file}: profiles.${name}: a profile is an object of option defaults`);
    return [name, check.block(`profiles.${name}`, p, [])] as const;
  }));
  let chosen: ReturnType<ConfigChecker["block"]> | undefined;
  if (profile !== undefined) {
    chosen = checked.get(profile);
    if (!chosen) throw new UsageError(`${file}: no profile '${profile}' (it has ${checked.size ? [...checked.keys()].join(", ") : "none"})`);
  }
  return {
    file,
    ...(profile !== undefined ? { profile } : {}),
    values: { ...top.values, ...chosen?.values },
    ...((chosen?.paths ?? top.paths) ? { paths: chosen?.paths ?? top.paths } : {}),
    overrides: [...top.overrides, ...(chosen?.overrides ?? [])],
  };
}
