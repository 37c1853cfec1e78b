// How a worker thread tells the main thread about itself outside any task: the exit code
// of a worker that recycles itself, and the channel its late errors go out on
// (worker/late-errors.ts sends, orchestrator/scheduling/late-error-notices.ts listens).

/** The exit code of a worker that recycles itself: the scheduler runs a test it had just been handed again. */
export const RECYCLE_EXIT_CODE = 75;

export interface LateErrorNotice {
  /** The run that started the failing timer or promise. */
  runKey: string;
  kind: "uncaughtException" | "unhandledRejection";
  message: string;
  threadId: number;
}

/** One channel per orchestrator process (its worker threads share the pid). */
export const lateErrorChannelName = (): string => `haltpoint-late-errors-${process.pid}`;
