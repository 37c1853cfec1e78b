import repl, { type REPLEval, type REPLServer } from "node:repl";
import { Duplex } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import type { MessagePort } from "node:worker_threads";
import { postClose, postData } from "./console-channel.ts";
import type { ConsoleReplOptions } from "./console-repl.ts";
import { CrlfEncoder, DO, DONT, EOF, IP, OPT_ECHO, OPT_NAWS, OPT_SGA, TelnetDecoder, WILL, WONT, negotiation, parseNaws, type TelnetEvent } from "./telnet.ts";

// One console session of a breakpoint (see console-repl.ts for the host that owns them):
// the telnet decoding of what the client sends, a node:repl REPLServer, and the feeding of
// lines to it. Line mode vs terminal mode is explained in console-repl.ts.

const CTRL_C = 0x03;
const CTRL_D = 0x04;

/** One console session: telnet decoding, a REPLServer, and the way lines are fed to it. */
export class ReplSession {
  private readonly telnet = new TelnetDecoder({ crlf: true });
  private readonly crlf = new CrlfEncoder();
  private readonly text = new StringDecoder("utf8");
  private server!: REPLServer;
  private stream!: Duplex;
  private terminal = false;
  private size = { columns: 80, rows: 24 };
  /** Telnet options already answered (SGA, NAWS). */
  private readonly agreed = new Set<number>();
  /** Line mode: complete lines not yet given to the REPL, and the partial one. */
  private lines: string[] = [];
  private partial = "";
  private busy = false;
  private pumping = false;
  private inputEnded = false;
  private ended = false;

  constructor(
    private readonly id: number,
    private readonly port: MessagePort,
    private readonly opts: ConsoleReplOptions,
    private readonly onEnd: () => void,
  ) {}

  start(): void {
    this.write(this.opts.banner.endsWith("\n") ? this.opts.banner : `${this.opts.banner}\n`);
    this.startRepl(false);
  }

  receive(bytes: Buffer): void {
    if (this.ended || this.inputEnded) return;
    const { data, events } = this.telnet.decode(bytes);
    for (const e of events) this.onTelnet(e);
    if (!data.length) return;
    if (this.terminal) {
      this.stream.push(data);
      return;
    }
    for (const ch of this.text.write(data)) {
      if (ch === "\n") {
        this.lines.push(this.partial);
        this.partial = "";
      } else if (ch.charCodeAt(0) === CTRL_D) {
        // Like a TTY: Ctrl-D on an empty line is end of input; elsewhere it is dropped.
        if (this.partial === "") return this.endInput();
      } else if (ch.charCodeAt(0) === CTRL_C) {
        this.interrupt();
      } else {
        this.partial += ch;
      }
    }
    this.pump();
  }

  /** No more input (the client half-closed or left): finish what is queued, then end. */
  endInput(): void {
    if (this.inputEnded || this.ended) return;
    this.inputEnded = true;
    // Terminal mode: readline sees the end itself, and the REPL waits for a pending `await`.
    if (this.terminal) this.stream.push(null);
    else this.pump();
  }

  /** End the session now: an optional goodbye, then close it on both sides. */
  end(goodbye?: string): void {
    if (this.ended) return;
    if (goodbye) this.write(`\n${goodbye}\n`);
    this.ended = true;
    postClose(this.port, this.id);
    this.server.close();
    this.stream.destroy();
    this.onEnd();
  }

  private write(s: string): void {
    if (!this.ended) postData(this.port, this.id, this.crlf.encode(s));
  }

  private startRepl(terminal: boolean): void {
    const old = this.server;
    const oldStream = this.stream;
    this.terminal = terminal;
    // Whatever the old REPL had queued or was evaluating stays with it.
    this.lines = [];
    this.partial = "";
    this.busy = false;
    const stream: Duplex & { columns?: number; rows?: number } = new Duplex({
      decodeStrings: false,
      read() {},
      write: (chunk: string | Buffer, _enc, cb) => {
        if (this.stream === stream) this.write(typeof chunk === "string" ? chunk : chunk.toString("utf8"));
        cb();
      },
    });
    // readline sizes its line editing from the output's columns (NAWS updates them).
    stream.columns = this.size.columns;
    stream.rows = this.size.rows;
    this.stream = stream;
    const server = repl.start({
      input: stream,
      output: stream,
      prompt: this.opts.prompt ?? "> ",
      terminal,
      useGlobal: false,
      useColors: this.opts.colors ?? false,
      ignoreUndefined: false,
    });
    this.server = server;
    const bind = (): void => void Object.assign(server.context, this.opts.context);
    bind();
    server.on("reset", bind); // `.clear` makes a fresh context
    server.on("exit", () => {
      if (this.server === server) this.end();
    });
    // Without a listener, readline answers Ctrl-Z by sending SIGTSTP to the whole process:
    // the orchestrator would stop. A console session has nothing to suspend.
    server.on("SIGTSTP", () => {});
    this.trackEvaluation(server);
    if (old) {
      old.close();
      oldStream.destroy();
    }
  }

  /**
   * Mark the session busy from the start of an evaluation until the REPL shows its prompt
   * again. The prompt is the one signal common to every ending: the eval callback is not
   * called when an evaluation throws or its awaited promise rejects (the REPL reports
   * those through its domain, then shows the prompt).
   */
  private trackEvaluation(server: REPLServer): void {
    const evaluate = server.eval;
    const tracked: REPLEval = (code, context, file, cb) => {
      this.busy = true;
      evaluate.call(server, code, context, file, cb);
    };
    (server as { eval: REPLEval }).eval = tracked;
    const display = server.displayPrompt.bind(server);
    server.displayPrompt = (preserveCursor?: boolean) => {
      display(preserveCursor);
      if (this.busy && this.server === server) {
        this.busy = false;
        queueMicrotask(() => this.pump());
      }
    };
  }

  /**
   * Line mode: give the REPL one line at a time, and none while an evaluation is pending.
   * readline in non-terminal mode would evaluate every line of a chunk at once, so a script
   * piped into the console (`nc < script`) would run its lines concurrently and out of
   * order. An evaluation that does not await finishes synchronously inside `write`.
   */
  private pump(): void {
    if (this.terminal || this.pumping || this.ended) return;
    this.pumping = true;
    try {
      while (!this.busy && this.lines.length && !this.ended) this.server.write(`${this.lines.shift()!}\n`);
    } finally {
      this.pumping = false;
    }
    if (!this.busy && !this.lines.length && this.inputEnded) this.end();
  }

  /** Ctrl-C in line mode: interrupt a pending await, or discard the line being entered. */
  private interrupt(): void {
    this.partial = "";
    this.lines = [];
    this.server.emit("SIGINT");
  }

  private onTelnet(e: TelnetEvent): void {
    if (e.kind === "command") {
      if (e.code === IP) this.terminal ? this.stream.push(Buffer.from([CTRL_C])) : this.interrupt();
      if (e.code === EOF) this.terminal ? this.stream.push(Buffer.from([CTRL_D])) : this.endInput();
      return;
    }
    if (e.kind === "subnegotiation") {
      const size = e.option === OPT_NAWS ? parseNaws(e.data) : undefined;
      if (size && size.columns > 0) {
        this.size = size;
        Object.assign(this.stream, size);
        this.stream.emit("resize");
      }
      return;
    }
    const { verb, option } = e;
    // Answer only requests that change something, so two peers never loop on acknowledgements.
    const reply = (v: number): void => void postData(this.port, this.id, negotiation(v as typeof WILL, option));
    if (verb === DO && option === OPT_ECHO && !this.terminal) {
      reply(WILL);
      this.startRepl(true);
    } else if (verb === DONT && option === OPT_ECHO && this.terminal) {
      reply(WONT);
      this.startRepl(false);
    } else if (option === OPT_SGA && (verb === DO || verb === DONT)) {
      // Go-aheads are never sent, so SGA is simply agreed to; only the first DO needs an answer.
      if (verb === DO && !this.agreed.has(option)) reply(WILL);
      this.agreed.add(option);
    } else if (option === OPT_NAWS && (verb === WILL || verb === WONT)) {
      if (verb === WILL && !this.agreed.has(option)) reply(DO);
      this.agreed.add(option);
    } else if (verb === DO && option !== OPT_ECHO) reply(WONT);
    else if (verb === WILL) reply(DONT);
  }
}
