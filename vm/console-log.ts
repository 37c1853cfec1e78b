import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";

/** Keep at most this much console text in memory; the file keeps everything. */
const MAX_MEMORY_CHARS = 8 * 1024 * 1024;

/**
 * A machine's console: everything it printed, appended to its own log file, kept in
 * memory for `consoleLog()`/`waitForConsoleText`, and cut into lines for listeners.
 */
export class ConsoleLog {
  private text = "";
  /** Characters trimmed from the front of `text` so far. */
  private dropped = 0;
  private partial = "";
  private file: WriteStream | undefined;
  private lineListeners = new Set<(line: string) => void>();
  private changeListeners = new Set<() => void>();

  constructor(filePath?: string) {
    if (filePath) {
      mkdirSync(dirname(filePath), { recursive: true });
      this.file = createWriteStream(filePath, { flags: "a" });
      this.file.on("error", () => (this.file = undefined));
    }
  }

  /**
   * Start writing to `filePath` now, with what was printed so far (a machine taken ahead is
   * started before its run exists: its console waits in memory for the run's log directory).
   */
  attachFile(filePath: string): void {
    if (this.file) return;
    mkdirSync(dirname(filePath), { recursive: true });
    this.file = createWriteStream(filePath, { flags: "a" });
    this.file.on("error", () => (this.file = undefined));
    if (this.dropped) this.file.write(`[haltpoint: the first ${this.dropped} characters of this console were printed before the run began and are not kept]\n`);
    this.file.write(this.text);
  }

  append(chunk: Buffer | string): void {
    const s = typeof chunk === "string" ? chunk : chunk.toString("utf8");
    if (!s) return;
    this.file?.write(s);
    this.text += s;
    if (this.text.length > MAX_MEMORY_CHARS) {
      const cut = this.text.length - MAX_MEMORY_CHARS / 2;
      this.text = this.text.slice(cut);
      this.dropped += cut;
    }
    const lines = (this.partial + s).split("\n");
    this.partial = lines.pop() ?? "";
    for (const raw of lines) {
      const line = raw.replace(/\r$/, "");
      for (const l of this.lineListeners) l(line);
    }
    for (const l of this.changeListeners) l();
  }

  onLine(listener: (line: string) => void): () => void {
    this.lineListeners.add(listener);
    return () => this.lineListeners.delete(listener);
  }

  get contents(): string {
    return this.text;
  }

  /** The last `n` lines, for boot-failure messages. */
  tail(n: number): string {
    return this.text.replace(/\r/g, "").split("\n").slice(-n).join("\n");
  }

  /** Characters appended so far (an absolute position, unaffected by trimming). */
  get length(): number {
    return this.dropped + this.text.length;
  }

  /**
   * Resolves with the first match of `regex` in the text from absolute position `from`
   * (default: the whole log) and the absolute position where the match ends, or rejects
   * when `signal` aborts.
   */
  waitFor(regex: RegExp, signal: AbortSignal, from = 0): Promise<{ match: string; end: number }> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const start = Math.max(0, from - this.dropped);
        const m = new RegExp(regex.source, regex.flags.replace("g", "")).exec(this.text.slice(start));
        if (m) {
          cleanup();
          resolve({ match: m[0], end: this.dropped + start + m.index + m[0].length });
          return true;
        }
        return false;
      };
      const onChange = (): void => {
        check();
      };
      const onAbort = (): void => {
        cleanup();
        reject(signal.reason);
      };
      const cleanup = (): void => {
        this.changeListeners.delete(onChange);
        signal.removeEventListener("abort", onAbort);
      };
      if (check()) return;
      if (signal.aborted) return onAbort();
      this.changeListeners.add(onChange);
      signal.addEventListener("abort", onAbort);
    });
  }

  async close(): Promise<void> {
    if (this.partial) {
      for (const l of this.lineListeners) l(this.partial);
      this.partial = "";
    }
    const f = this.file;
    this.file = undefined;
    if (f) await new Promise<void>((r) => f.end(r));
  }
}
