/**
 * What a test definition must satisfy, checked by `defineTest()` and again by the loader:
 * a plain object exported without `defineTest` must not run with `name: 42` or `name: ""`.
 * Returns the first problem, as a phrase that follows "defineTest(): " or "<file>: ".
 */
export function definitionProblem(def: unknown): string | undefined {
  if (typeof def !== "object" || def === null) return "a test definition must be an object";
  const d = def as Record<string, unknown>;
  if (typeof d.testScript !== "function") return "`testScript` must be a function";
  if (d.name !== undefined && (typeof d.name !== "string" || !d.name.trim())) return "`name` must be a non-empty string";
  if (d.globalTimeout !== undefined && !(typeof d.globalTimeout === "number" && d.globalTimeout > 0)) return "`globalTimeout` must be a positive number of seconds";
  if (d.sshBackdoor !== undefined && typeof d.sshBackdoor !== "boolean") return "`sshBackdoor` must be true or false";
  if (d.retries !== undefined && !(Number.isSafeInteger(d.retries) && (d.retries as number) >= 0)) return "`retries` must be a whole number (0 or more)";
  if (d.enableDebugHook !== undefined && typeof d.enableDebugHook !== "boolean") return "`enableDebugHook` must be true or false";
  return undefined;
}
