import { BroadcastChannel } from "node:worker_threads";
import { lateErrorChannelName, type LateErrorNotice } from "../../common/worker-exit.ts";

/** The orchestrator's end of worker/late-errors.ts: each finished run's late error, as it comes. */
export function listenForLateErrors(onNotice: (n: LateErrorNotice) => void): { close(): void } {
  const channel = new BroadcastChannel(lateErrorChannelName());
  channel.onmessage = (m) => onNotice((m as { data: LateErrorNotice }).data);
  channel.unref(); // it never keeps the process alive
  return { close: () => channel.close() };
}
