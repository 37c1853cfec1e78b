import type { QmpEvent } from "./qmp.ts";

/** Events kept for waitForQmpEvent; older ones are dropped past this many. */
const MAX_EVENTS = 1000;

/**
 * The QMP events of one QEMU run, in order, for NixOS `wait_for_qmp_event` semantics: a
 * wait takes the first event its filter accepts, and skips (drops) every event before it,
 * whether it came before the wait started or while it ran.
 */
export class QmpEventLog {
  private events: QmpEvent[] = [];
  private waiters = new Set<() => void>();

  push(e: QmpEvent): void {
    this.events.push(e);
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    for (const w of [...this.waiters]) w();
  }

  clear(): void {
    this.events = [];
  }

  next(filter: (e: QmpEvent) => boolean, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const scan = (): boolean => {
        while (this.events.length) {
          const e = this.events.shift()!;
          let ok: boolean;
          try {
            ok = filter(e);
          } catch (err) {
            done();
            reject(err as Error);
            return true;
          }
          if (ok) {
            done();
            resolve(e);
            return true;
          }
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no matching QMP event within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const onEvent = (): void => {
        scan();
      };
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(onEvent);
      };
      if (scan()) return;
      this.waiters.add(onEvent);
    });
  }
}
