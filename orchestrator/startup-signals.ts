// bin/haltpoint.mjs handles SIGINT/SIGTERM from its first line (exit 130: Ctrl-C while
// haltpoint loads must not look like success), until a command installs its own handlers
// and drops the bin's with this. The bin marks its handler with this property.
export const STARTUP_HANDLER_MARK = "haltpointStartupSignalHandler";

/** Remove the bin's startup SIGINT/SIGTERM handlers (none when haltpoint runs in-process). */
export function removeStartupSignalHandlers(): void {
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    for (const l of process.listeners(sig)) {
      if ((l as unknown as Record<string, unknown>)[STARTUP_HANDLER_MARK]) process.off(sig, l);
    }
  }
}
