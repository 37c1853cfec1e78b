// The keys of watch mode, as Vitest and Jest users know them: `a` rerun all, `f` rerun the
// failed ones, Enter (or `r`) rerun the last selection, `q` quit, `h` help. Ctrl-C quits too
// (in raw mode it arrives as a byte, not as SIGINT). Only on a terminal: without one, stdin
// is left alone and watch mode reacts to file changes only.
export type WatchKey = "all" | "failed" | "rerun" | "quit" | "help";

const KEYS: Record<string, WatchKey> = { a: "all", f: "failed", r: "rerun", "\r": "rerun", "\n": "rerun", q: "quit", "\x03": "quit", "\x04": "quit", h: "help" };

export const KEY_HELP = "press a to rerun all, f to rerun failed, Enter to rerun, q to quit, h for help";

export const KEY_HELP_LONG = [
  "Watch usage",
  "  a      rerun every test",
  "  f      rerun the tests that failed last",
  "  Enter  rerun the last selection (r too)",
  "  q      quit (Ctrl-C too)",
  "A key pressed while tests run stops them first (their results are marked superseded).",
];

export class KeyInput {
  private readonly onData = (chunk: Buffer | string): void => {
    for (const ch of chunk.toString()) {
      const k = KEYS[ch];
      if (k) this.onKey(k);
    }
  };
  private active = false;

  constructor(
    private readonly input: NodeJS.ReadStream,
    private readonly onKey: (key: WatchKey) => void,
  ) {}

  /** Start reading keys if the input is a terminal; false when it is not. */
  start(): boolean {
    if (!this.input.isTTY) return false;
    this.input.setRawMode(true);
    this.input.on("data", this.onData);
    this.input.resume();
    this.active = true;
    return true;
  }

  close(): void {
    if (!this.active) return;
    this.active = false;
    this.input.off("data", this.onData);
    this.input.setRawMode(false);
    this.input.pause();
  }
}
