// Where a run's options come from, strongest first: the command line, HALTPOINT_*
// environment variables (HALTPOINT_MAX_FAIL for --max-fail: every option that takes a
// value), the config file's chosen profile, the config file's defaults, and last the test
// file's own (retries, globalTimeout). Commander records each value's source; an
// environment or config value is filled in only where a stronger layer set none.
import type { Command, Option } from "commander";
import { UsageError } from "../selection/discovery.ts";
import { CONFIG_FILE_NAMES, findConfigFile, loadConfig } from "./config-file.ts";
import type { SettingLayers, TestSettings } from "./test-settings.ts";

const PER_TEST = ["retries", "timeout", "slowTimeout"] as const;

/** `--max-fail` → HALTPOINT_MAX_FAIL. */
export function envVarOf(o: Option): string {
  return `HALTPOINT_${o.attributeName().replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/**
 * Fill `cmd`'s options from HALTPOINT_* variables where the command line gave none, parsed
 * as the command line would parse them. (Commander's own `.env()` must be set before an
 * option is added; this covers options added by any means, and names the variable in errors.)
 */
export function applyEnvironment(cmd: Command, env: NodeJS.ProcessEnv = process.env): void {
  for (const o of cmd.options) {
    if (!(o.required || o.optional) || o.negate) continue;
    const name = envVarOf(o);
    const raw = env[name];
    const key = o.attributeName();
    if (raw === undefined || raw === "" || cmd.getOptionValueSource(key) === "cli") continue;
    let value: unknown = raw;
    try {
      if (o.parseArg) value = o.parseArg(raw, undefined);
    } catch (e) {
      throw new UsageError(`${name}=${raw}: ${(e as Error).message.replace(/^error: /, "")}`);
    }
    cmd.setOptionValueWithSource(key, o.variadic ? (Array.isArray(value) ? value : [value]) : value, "env");
  }
}

export interface ResolvedSettings {
  /** The paths to run: the command line's, else the config file's, else none. */
  paths: string[];
  layers: SettingLayers;
  /** The config file used, and the profile. */
  configFile?: string;
  profile?: string;
}

/**
 * Fill `cmd`'s option values from the config file (found in `cwd` or named by --config)
 * where the command line and the environment set none, and split the per-test settings
 * into their layers. `runOptions` are the options a config file may set (the run
 * command's); only those `cmd` itself has are filled in (`except` aside).
 */
export async function resolveSettings(cmd: Command, paths: string[], runOptions: readonly Option[], o: { cwd?: string; except?: string[] } = {}): Promise<ResolvedSettings> {
  applyEnvironment(cmd);
  const opts = cmd.opts() as { config?: string; profile?: string };
  const cwd = o.cwd ?? process.cwd();
  const file = findConfigFile(cwd, opts.config);
  const strong: TestSettings = {};
  const weak: TestSettings = {};
  const fromUser = (k: string): boolean => ["cli", "env"].includes(cmd.getOptionValueSource(k) ?? "");
  for (const k of PER_TEST) if (fromUser(k) && cmd.getOptionValue(k) !== undefined) strong[k] = cmd.getOptionValue(k);
  if (!file) {
    if (opts.profile !== undefined) throw new UsageError(`--profile ${opts.profile}: no config file (${CONFIG_FILE_NAMES.join(", ")} in ${cwd}, or --config FILE)`);
    return { paths, layers: { strong, overrides: [], weak } };
  }
  const config = await loadConfig(file, runOptions, opts.profile);
  const own = new Set(cmd.options.map((x) => x.attributeName()));
  for (const [k, v] of Object.entries(config.values)) {
    if ((PER_TEST as readonly string[]).includes(k)) {
      weak[k as (typeof PER_TEST)[number]] = v as number;
      continue;
    }
    if (!own.has(k) || o.except?.includes(k)) continue;
    const source = cmd.getOptionValueSource(k);
    if (source === undefined || source === "default") cmd.setOptionValueWithSource(k, v, "config");
  }
  return {
    paths: paths.length ? paths : (config.paths ?? []),
    layers: { strong, overrides: config.overrides, weak },
    configFile: file,
    ...(config.profile !== undefined ? { profile: config.profile } : {}),
  };
}
