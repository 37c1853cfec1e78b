import { inspect } from "node:util";

/**
 * Scripts throw anything: `Object.create(null)`, a Proxy, an Error whose `message` getter
 * throws, a symbol. `String(e)` throws on some of these (then the whole worker "crashed");
 * this never throws and always gives a string.
 */
export function describeThrown(e: unknown): string {
  if (typeof e === "string") return e;
  if (typeof e === "symbol") return e.toString();
  if (typeof e !== "object" && typeof e !== "function") return String(e);
  try {
    return inspect(e, { depth: 2, breakLength: Infinity, showProxy: false, getters: false, customInspect: false });
  } catch {
    /* a Proxy whose traps throw even for inspect */
  }
  try {
    return Object.prototype.toString.call(e);
  } catch {
    return "[a thrown value that cannot be described]";
  }
}

/** Read one property without letting a throwing getter or Proxy trap escape. */
export function safeProperty(o: object, key: string): unknown {
  try {
    return (o as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}
