// QmpClient.connect's retry schedule: QEMU listens ~25–30 ms after its spawn, so a start that
// polled every 50 ms found its QMP at ~55 ms (issue #26; bench/vm's breakdown shows the step).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { qmpRetryDelayMs } from "../../vm/qemu/qmp.ts";

describe("QMP connect retries", () => {
  it("tries every 2 ms while QEMU is starting, so it finds the socket within 2 ms of its listening", () => {
    for (const elapsed of [0, 1, 25, 30, 500, 999]) assert.equal(qmpRetryDelayMs(elapsed), 2, `at ${elapsed} ms`);
  });
  it("backs off to 50 ms after a second (a slow start on a loaded host)", () => {
    for (const elapsed of [1000, 5000, 29_000]) assert.equal(qmpRetryDelayMs(elapsed), 50, `at ${elapsed} ms`);
  });
});
