/**
 * Poll `probe` until `done(value)` holds (or `ms` pass) and return the last value, for the
 * test to assert on: waiting on the condition itself instead of a fixed sleep (a process
 * reaped, a file flushed), so a slow host waits longer and a fast one does not wait at all.
 */
export async function settled<T>(probe: () => T | Promise<T>, done: (value: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    const v = await probe();
    if (done(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** settled() for a list that must become empty (processes left behind). */
export const emptied = <T>(probe: () => Promise<T[]>, ms?: number): Promise<T[]> => settled(probe, (v) => v.length === 0, ms);
