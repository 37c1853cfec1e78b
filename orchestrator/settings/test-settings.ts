// The settings a test runs with — retries, its global timeout, when it counts as slow —
// decided per test from the layers that may set them. Precedence, strongest first:
// the command line and HALTPOINT_* environment, a config file's per-test override whose
// filter matches the test (the last match wins), the chosen profile, the config file's
// defaults, and last what the test file itself declares.
import type { PlannedTest } from "../selection/plan.ts";

export interface TestSettings {
  retries?: number;
  /** Seconds: replaces the test's globalTimeout (--timeout). */
  timeout?: number;
  /** Seconds: a run still going after this long is reported SLOW (--slow-timeout). */
  slowTimeout?: number;
}

export interface TestOverride extends TestSettings {
  /** Matched against the test's name and file, as --filter is. */
  filter: RegExp;
}

export interface SettingLayers {
  /** From the command line or the environment: beats everything. */
  strong: TestSettings;
  /** Per-test overrides, in file order (profile overrides after the file's own). */
  overrides: TestOverride[];
  /** From the profile and the config file's defaults. */
  weak: TestSettings;
}

const KEYS = ["retries", "timeout", "slowTimeout"] as const;

/** Each test with its settings decided: `retries`, `globalTimeout`, `slowTimeout` filled in. */
export function applyTestSettings(tests: PlannedTest[], layers: SettingLayers): PlannedTest[] {
  return tests.map((t) => {
    const own: TestSettings = { retries: t.retries ?? 0, timeout: t.globalTimeout, ...(t.slowTimeout !== undefined ? { slowTimeout: t.slowTimeout } : {}) };
    const matching = layers.overrides.filter((o) => o.filter.test(t.name) || o.filter.test(t.file));
    const pick = <K extends (typeof KEYS)[number]>(k: K): TestSettings[K] => {
      if (layers.strong[k] !== undefined) return layers.strong[k];
      for (const o of [...matching].reverse()) if (o[k] !== undefined) return o[k];
      if (layers.weak[k] !== undefined) return layers.weak[k];
      return own[k];
    };
    const slow = pick("slowTimeout");
    return { ...t, retries: pick("retries") ?? 0, globalTimeout: pick("timeout") ?? t.globalTimeout, ...(slow !== undefined ? { slowTimeout: slow } : {}) };
  });
}
