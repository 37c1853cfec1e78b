// The little of the telnet protocol (RFC 854/855/1073) that a debug console needs.
//
// A telnet client is a byte pipe with in-band commands: 0xFF (IAC) starts a command,
// `IAC WILL|WONT|DO|DONT <option>` negotiates an option, `IAC SB <option> … IAC SE` carries
// option data (the window size, NAWS), and `IAC IAC` is a literal 0xFF. Lines end in CR LF,
// and a CR that is not followed by LF is followed by NUL. The console must strip all of this
// before the bytes reach a REPL, or the REPL sees garbage and lines that end in "\r".
// `nc` and `haltpoint attach` send no IAC at all, so everything here must also be a no-op
// on plain text.

export const IAC = 255;
export const DONT = 254;
export const DO = 253;
export const WONT = 252;
export const WILL = 251;
export const SB = 250;
export const SE = 240;
/** Commands a client sends for keys when it edits lines itself (telnet's `localchars`). */
export const IP = 244; // interrupt process (Ctrl-C)
export const EOF = 236; // end of file (Ctrl-D)

export const OPT_ECHO = 1;
export const OPT_SGA = 3; // suppress go-ahead: together with ECHO, "character at a time"
export const OPT_NAWS = 31; // negotiate about window size

export type Verb = typeof WILL | typeof WONT | typeof DO | typeof DONT;

export type TelnetEvent =
  | { kind: "negotiate"; verb: Verb; option: number }
  | { kind: "subnegotiation"; option: number; data: Buffer }
  | { kind: "command"; code: number };

/** Longest subnegotiation kept: NAWS needs 4 bytes; anything longer is someone else's option. */
const MAX_SB = 64;

const enum S {
  Data,
  Iac,
  Verb,
  SbOption,
  Sb,
  SbIac,
}

/**
 * Splits a client's byte stream into data and telnet events. Stateful, because a command or
 * a CR LF pair can be split across TCP reads. With `crlf`, "\r\n", "\r\0" and a bare "\r"
 * (a terminal in raw mode sends Enter as "\r") all become "\n".
 */
export class TelnetDecoder {
  private state = S.Data;
  private verb: Verb = WILL;
  private sbOption = 0;
  private sb: number[] = [];
  private afterCr = false;

  constructor(private readonly opts: { crlf: boolean }) {}

  decode(chunk: Uint8Array): { data: Buffer; events: TelnetEvent[] } {
    const out: number[] = [];
    const events: TelnetEvent[] = [];
    for (const b of chunk) {
      switch (this.state) {
        case S.Data:
          if (b === IAC) this.state = S.Iac;
          else this.dataByte(b, out);
          break;
        case S.Iac:
          if (b === IAC) {
            this.state = S.Data;
            this.dataByte(b, out);
          } else if (b >= WILL && b <= DONT) {
            this.verb = b as Verb;
            this.state = S.Verb;
          } else if (b === SB) {
            this.state = S.SbOption;
          } else {
            this.state = S.Data;
            events.push({ kind: "command", code: b });
          }
          break;
        case S.Verb:
          events.push({ kind: "negotiate", verb: this.verb, option: b });
          this.state = S.Data;
          break;
        case S.SbOption:
          this.sbOption = b;
          this.sb = [];
          this.state = S.Sb;
          break;
        case S.Sb:
          if (b === IAC) this.state = S.SbIac;
          else if (this.sb.length < MAX_SB) this.sb.push(b);
          break;
        case S.SbIac:
          if (b === SE) {
            events.push({ kind: "subnegotiation", option: this.sbOption, data: Buffer.from(this.sb) });
            this.state = S.Data;
          } else {
            // IAC IAC inside a subnegotiation is a literal 255 (a window 255 columns wide).
            if (this.sb.length < MAX_SB) this.sb.push(b);
            this.state = S.Sb;
          }
          break;
      }
    }
    return { data: Buffer.from(out), events };
  }

  private dataByte(b: number, out: number[]): void {
    if (!this.opts.crlf) {
      out.push(b);
      return;
    }
    const afterCr = this.afterCr;
    this.afterCr = b === 13;
    if (b === 13) out.push(10);
    else if (afterCr && (b === 10 || b === 0)) return; // the second half of "\r\n" / "\r\0"
    else out.push(b);
  }
}

/** `IAC <verb> <option>`. */
export function negotiation(verb: Verb, option: number): Buffer {
  return Buffer.from([IAC, verb, option]);
}

/** The NAWS subnegotiation announcing a window size (a 255 in the values is doubled). */
export function nawsMessage(columns: number, rows: number): Buffer {
  const clamp = (n: number): number => Math.max(0, Math.min(0xffff, Math.floor(n)));
  const bytes = [clamp(columns) >> 8, clamp(columns) & 0xff, clamp(rows) >> 8, clamp(rows) & 0xff];
  return Buffer.from([IAC, SB, OPT_NAWS, ...bytes.flatMap((b) => (b === IAC ? [IAC, IAC] : [b])), IAC, SE]);
}

/** Window size from a NAWS subnegotiation's data, if it is well formed. */
export function parseNaws(data: Buffer): { columns: number; rows: number } | undefined {
  if (data.length !== 4) return undefined;
  return { columns: data.readUInt16BE(0), rows: data.readUInt16BE(2) };
}

/**
 * Turns "\n" into "\r\n" on the way to a client: a telnet client (and a terminal in raw
 * mode) moves down without returning to column 0 on a bare LF, so output staircases.
 * Stateful so that a "\r" at the end of one write and "\n" at the start of the next is
 * not doubled.
 */
export class CrlfEncoder {
  private lastWasCr = false;

  encode(text: string): string {
    let out = "";
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (c === "\n" && !(i === 0 ? this.lastWasCr : text[i - 1] === "\r")) out += "\r";
      out += c;
    }
    if (text.length) this.lastWasCr = text[text.length - 1] === "\r";
    return out;
  }
}
