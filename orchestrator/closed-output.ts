// `haltpoint run … | head`: the reader of stdout or stderr may go away long before the run
// ends. Node then emits EPIPE on the stream, which would crash the orchestrator mid-run
// with machines up and no reports. Instead, what is still written there is dropped: the run
// goes on, its reports and logs are written, its machines torn down, its status kept.

const GONE = new Set(["EPIPE", "ERR_STREAM_DESTROYED", "ERR_STREAM_WRITE_AFTER_END"]);

export function dropOutputWhenReaderLeaves(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (!GONE.has(e.code ?? "")) throw e;
    });
  }
}
