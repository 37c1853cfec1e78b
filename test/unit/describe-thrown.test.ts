// Describing whatever a script throws (common/describe-thrown.ts, common/events.ts serializeError).
import { test } from "node:test";
import assert from "node:assert/strict";
import { describeThrown } from "../../common/describe-thrown.ts";
import { serializeError } from "../../common/events.ts";

test("hostile thrown values give a string, never an exception", () => {
  const nullProto = Object.assign(Object.create(null), { code: 7 });
  const trap = () => {
    throw new Error("trap");
  };
  const proxy = new Proxy({}, { get: trap, getPrototypeOf: trap, ownKeys: trap, getOwnPropertyDescriptor: trap, has: trap });
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();
  const getter = new Error("x");
  Object.defineProperty(getter, "stack", { get: trap });
  Object.defineProperty(getter, "message", { get: trap });
  for (const v of [nullProto, proxy, revoked, getter, Symbol("s"), 42n, undefined, null, () => {}]) {
    assert.equal(typeof describeThrown(v), "string");
    const s = serializeError(v);
    assert.equal(typeof s.message, "string");
    assert.equal(typeof s.name, "string");
  }
  assert.match(describeThrown(nullProto), /code: 7/);
  assert.equal(describeThrown(Symbol("s")), "Symbol(s)");
  assert.equal(serializeError(new TypeError("plain")).message, "plain");
});
