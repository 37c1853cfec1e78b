import type { MessagePort } from "node:worker_threads";
import { asBuffer, isConsoleRequest, type ConsoleRequest } from "./console-channel.ts";
import { ReplSession } from "./console-session.ts";

// The worker side of a breakpoint's console: one node:repl REPLServer per console session,
// running in the halted test's worker so that `await server.succeed(…)` drives the very
// machines the test was using. The bytes come and go over the console channel
// (console-channel.ts); the main thread only relays TCP.
//
// Each session (console-session.ts) is in one of two modes, chosen by the client in
// standard telnet terms:
// - line mode (the default): the client edits lines and echoes locally. That is what
//   `telnet` (line by line), `nc` and scripts do. The REPL runs with `terminal: false`, so it
//   writes no escape sequences and does not echo.
// - terminal mode: a client that sends `IAC DO ECHO` asks the server to echo, i.e. it is in
//   raw / character-at-a-time mode (`haltpoint attach` on a TTY, telnet's `mode character`).
//   The REPL then runs with `terminal: true`: line editing, history, arrows, Tab, Ctrl-C/D.
// Switching mode replaces the session's REPLServer (a REPL's terminal mode is fixed at
// creation); clients switch right after connecting, before anything was typed.

export interface ConsoleReplOptions {
  /** Bound into every session's REPL context: the machines, `error`, `release`, … */
  context: Record<string, unknown>;
  /** Printed when a session opens. */
  banner: string;
  prompt?: string;
  /** ANSI colours in results (default off: a log of a session should stay readable). */
  colors?: boolean;
}

const RELEASED = "breakpoint released";

export class ConsoleReplHost {
  private readonly sessions = new Map<number, ReplSession>();
  private closed = false;

  constructor(
    private readonly port: MessagePort,
    private readonly opts: ConsoleReplOptions,
  ) {
    port.on("message", this.onMessage);
    // The main thread closed the channel (its ConsoleServer closed): nobody is listening.
    port.once("close", () => this.shutdown(undefined));
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** End every session, telling each client the breakpoint was released, and close the channel. */
  close(): void {
    this.shutdown(RELEASED);
  }

  private shutdown(goodbye: string | undefined): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.sessions.values()]) s.end(goodbye);
    this.port.off("message", this.onMessage);
    // Messages already posted (the goodbyes) are still delivered after close().
    this.port.close();
  }

  private readonly onMessage = (m: unknown): void => {
    if (!isConsoleRequest(m)) return;
    const session = this.sessions.get(m.session);
    if (m.t === "open") return this.open(m);
    if (!session) return;
    if (m.t === "data") session.receive(asBuffer(m.data));
    else session.endInput();
  };

  private open(m: ConsoleRequest): void {
    if (this.closed || this.sessions.has(m.session)) return;
    const session = new ReplSession(m.session, this.port, this.opts, () => this.sessions.delete(m.session));
    this.sessions.set(m.session, session);
    session.start();
  }
}
