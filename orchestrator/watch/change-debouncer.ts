// File events come in bursts: an editor's save is a write, a rename and a chmod, a `git
// checkout` is hundreds. The debouncer gathers the changed paths until no new one has come
// for `quietMs`, then hands over the batch once.
export class ChangeDebouncer {
  private pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly quietMs: number,
    private readonly onBatch: (paths: string[]) => void,
  ) {}

  add(path: string): void {
    this.pending.add(path);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), this.quietMs);
  }

  private flush(): void {
    this.timer = undefined;
    const batch = [...this.pending].sort();
    this.pending.clear();
    if (batch.length) this.onBatch(batch);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
  }
}
