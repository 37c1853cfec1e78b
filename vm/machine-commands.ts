import { MachineError } from "./errors.ts";
import type { CommandOptions } from "./types.ts";

// Small pieces of the Machine API that are plain functions: argument shapes and the
// guest commands some methods run.

/** `succeed("a", "b", {timeout: 5})`: the commands, and the options when the last argument is an object. */
export function splitCommandOptions(machine: string, method: string, args: Array<string | CommandOptions>): { cmds: string[]; timeout?: number } {
  const last = args[args.length - 1];
  const opts = typeof last === "object" && last !== null ? (last as CommandOptions) : undefined;
  const cmds = opts ? args.slice(0, -1) : args;
  for (const c of cmds) {
    if (typeof c !== "string") throw new MachineError(machine, `${method}(): commands must be strings, and options ({timeout}) the last argument`);
  }
  if (opts?.timeout !== undefined && !(typeof opts.timeout === "number" && opts.timeout > 0)) {
    throw new MachineError(machine, `${method}(): timeout must be a positive number of seconds`);
  }
  return { cmds: cmds as string[], timeout: opts?.timeout };
}

/** NixOS `get_tty_text`: /dev/vcsN holds the screen without line breaks; fold it at the tty's width. */
export function ttyTextCommand(tty: number | string): string {
  const n = String(tty);
  if (!/^[0-9]{1,2}$/.test(n)) throw new TypeError(`getTtyText(${JSON.stringify(tty)}): a tty is a number (1 for /dev/tty1)`);
  return `fold -w "$(stty -F /dev/tty${n} size | cut -d' ' -f2)" /dev/vcs${n}`;
}
