/** Polling waits retry once a second (like the NixOS driver) until a deadline. */
export const POLL_INTERVAL_MS = 1000;
export const DEFAULT_WAIT_SECONDS = 900;

export class WaitTimeoutError extends Error {
  override name = "WaitTimeoutError";
}

/**
 * Call `attempt` until it returns a value other than `undefined`, once a second, for at
 * most `timeoutSeconds`. The error says what was awaited and what the last attempt saw.
 */
export async function pollUntil<T>(
  what: string,
  timeoutSeconds: number,
  attempt: () => Promise<{ done: true; value: T } | { done: false; last: string }>,
  intervalMs = POLL_INTERVAL_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let last = "";
  for (;;) {
    const r = await attempt();
    if (r.done) return r.value;
    last = r.last;
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new WaitTimeoutError(`timed out after ${timeoutSeconds} s waiting for ${what}${last ? ` (${last})` : ""}`);
    }
    await new Promise((res) => setTimeout(res, Math.min(intervalMs, left)));
  }
}
