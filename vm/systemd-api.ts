// The systemd half of the Machine API, with the NixOS test driver's semantics: `systemctl`
// (optionally as a user's `systemctl --user`), unit properties from `systemctl show`, and
// waits that fail at once when waiting cannot succeed (a unit that failed, or that is
// inactive with no job pending). Every error names the machine (MachineError) and the unit.

import { ansiCQuote } from "./backdoor-shell.ts";
import { MachineError } from "./errors.ts";
import { DEFAULT_WAIT_SECONDS, pollUntil } from "./poll.ts";
import type { ExecuteResult, SystemdOptions, UnitWaitOptions, WaitOptions } from "./types.ts";

/** What the systemd calls need of a machine. */
export interface SystemdHost {
  readonly name: string;
  execute(cmd: string, opts?: { timeout?: number }): Promise<ExecuteResult<string>>;
  log(msg: string): void;
}

/** A word as the shell reads it: plain words (unit names, options) stay as they are. */
const word = (w: string): string => (/^[A-Za-z0-9@%+=:,./_-]+$/.test(w) ? w : ansiCQuote(w));
const quoteArgs = (args: string | readonly string[]): string => (typeof args === "string" ? args : args.map(word).join(" "));

function who(o: SystemdOptions): string {
  return o.user === undefined ? "" : ` of user ${o.user}`;
}

/** The shell command for `systemctl ARGS`, or `systemctl --user ARGS` in USER's session. */
export function systemctlCommand(args: string | readonly string[], o: SystemdOptions = {}): string {
  const q = quoteArgs(args);
  if (o.user === undefined) return `systemctl ${q}`;
  // As NixOS: a login shell of the user, with the user's runtime directory (its systemd --user bus).
  const inner = `XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user ${q}`;
  return `su -l ${ansiCQuote(o.user)} --shell /bin/sh -c ${ansiCQuote(inner)}`;
}

export class Systemd {
  constructor(private readonly m: SystemdHost) {}

  private error(msg: string, cmd?: string): MachineError {
    return new MachineError(this.m.name, msg, cmd);
  }

  /** A clear error on a machine without systemd, instead of every call failing in its own way. */
  async requireSystemd(what: string): Promise<void> {
    const r = await this.m.execute("command -v systemctl >/dev/null && test -d /run/systemd/system");
    if (r.status !== 0) throw this.error(`${what}: this machine does not run systemd (no systemctl or /run/systemd/system)`);
  }

  systemctl(args: string | readonly string[], o: SystemdOptions = {}): Promise<ExecuteResult<string>> {
    const cmd = systemctlCommand(args, o);
    this.m.log(`systemctl${o.user === undefined ? "" : ` --user (${o.user})`}: ${quoteArgs(args)}`);
    return this.m.execute(cmd);
  }

  /** `systemctl show UNIT` as an object, property name → value (NixOS `get_unit_info`). */
  async getUnitInfo(unit: string, o: SystemdOptions = {}): Promise<Record<string, string>> {
    const r = await this.m.execute(systemctlCommand(["--no-pager", "show", unit], o));
    if (r.status !== 0) throw this.error(`getUnitInfo(${JSON.stringify(unit)}): systemctl show${who(o)} failed (exit code ${r.status})`);
    const info: Record<string, string> = {};
    for (const line of r.stdout.split("\n")) {
      const eq = line.indexOf("=");
      if (eq > 0) info[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return info;
  }

  /** One property of a unit, as `systemctl show --property` prints it (NixOS `get_unit_property`). */
  async getUnitProperty(unit: string, property: string, o: SystemdOptions = {}): Promise<string> {
    const r = await this.m.execute(systemctlCommand(["--no-pager", "show", unit, `--property=${property}`], o));
    if (r.status !== 0) throw this.error(`getUnitProperty(${JSON.stringify(unit)}, ${JSON.stringify(property)}): systemctl show${who(o)} failed (exit code ${r.status})`);
    const line = r.stdout.replace(/\n$/, "");
    const m = /^([^=\n]+)=(.*)$/s.exec(line);
    if (!m || m[1] !== property) throw this.error(`getUnitProperty(${JSON.stringify(unit)}, ${JSON.stringify(property)}): systemctl show printed ${JSON.stringify(line)}, not ${property}=…`);
    return m[2]!;
  }

  /** Fails unless the unit's ActiveState is `state` now (NixOS `require_unit_state`, default "active"). */
  async requireUnitState(unit: string, state = "active", o: SystemdOptions = {}): Promise<void> {
    this.m.log(`checking that unit ${unit} is ${state}`);
    const info = await this.getUnitInfo(unit, o);
    if (info.ActiveState !== state) {
      throw this.error(`unit ${unit}${who(o)} is ${info.ActiveState ?? "in no known state"} (${describeState(info)}), expected ${state}${await this.journalTail(unit, o)}`);
    }
  }

  /**
   * Wait until the unit is active (NixOS `wait_for_unit`). Fails at once when it is `failed`,
   * or `inactive` with no job pending (nothing will start it), with its state and the last
   * lines of its journal.
   */
  async waitForUnit(unit: string, o: UnitWaitOptions = {}): Promise<void> {
    this.m.log(`waiting for unit ${unit}${who(o)}`);
    await this.requireSystemd(`waitForUnit(${JSON.stringify(unit)})`);
    const timeout = o.timeout ?? DEFAULT_WAIT_SECONDS;
    try {
      await pollUntil(`unit ${unit}${who(o)} to become active`, timeout, async () => {
        const info = await this.getUnitInfo(unit, o);
        const state = info.ActiveState ?? "unknown";
        if (state === "active") return { done: true, value: undefined };
        if (state === "failed") throw this.error(`unit ${unit}${who(o)} reached state failed (${describeState(info)})${await this.journalTail(unit, o)}`);
        if (state === "inactive") {
          const jobs = await this.m.execute(systemctlCommand(["list-jobs", "--full"], o) + " 2>&1");
          if (/No jobs/.test(jobs.stdout)) {
            // Read again: the job may have finished between the two reads.
            const again = await this.getUnitInfo(unit, o);
            if (again.ActiveState === "inactive") {
              const missing = again.LoadState && again.LoadState !== "loaded" ? `, LoadState ${again.LoadState}` : "";
              throw this.error(`unit ${unit}${who(o)} is inactive and there are no pending jobs (${describeState(again)}${missing})${await this.journalTail(unit, o)}`);
            }
          }
        }
        return { done: false, last: describeState(info) };
      });
    } catch (e) {
      if (e instanceof MachineError) throw e;
      throw this.error(`waitForUnit(${JSON.stringify(unit)}): ${(e as Error).message}`);
    }
  }

  /** Wait until something listens on the UNIX socket at `path` (NixOS `wait_for_open_unix_socket`; needs `nc -U`). */
  async waitForOpenUnixSocket(path: string, o: WaitOptions & { isDatagram?: boolean } = {}): Promise<void> {
    const kind = o.isDatagram ? "datagram" : "stream";
    this.m.log(`waiting for UNIX ${kind} socket ${path}`);
    const probe = `nc -z ${o.isDatagram ? "-uU" : "-U"} ${ansiCQuote(path)}`;
    try {
      await pollUntil(`UNIX ${kind} socket ${path} to open`, o.timeout ?? DEFAULT_WAIT_SECONDS, async () =>
        (await this.m.execute(probe)).status === 0 ? { done: true, value: undefined } : { done: false, last: "" },
      );
    } catch (e) {
      throw this.error(`waitForOpenUnixSocket(${JSON.stringify(path)}): ${(e as Error).message}`);
    }
  }

  /** The journal (of one unit, when given): `journalctl --no-pager [-u UNIT] [-n LINES]`. */
  async journal(unit?: string, o: SystemdOptions & { lines?: number } = {}): Promise<string> {
    const args = ["--no-pager", ...(o.user === undefined ? [] : ["--user"]), ...(unit ? ["-u", unit] : []), ...(o.lines ? ["-n", String(o.lines)] : [])];
    const inner = `journalctl ${quoteArgs(args)}`;
    const cmd = o.user === undefined ? inner : `su -l ${ansiCQuote(o.user)} --shell /bin/sh -c ${ansiCQuote(`XDG_RUNTIME_DIR=/run/user/$(id -u) ${inner}`)}`;
    const r = await this.m.execute(cmd);
    if (r.status !== 0) throw this.error(`journal(${unit ? JSON.stringify(unit) : ""}): journalctl${who(o)} failed (exit code ${r.status})`);
    return r.stdout;
  }

  /** The unit's last journal lines, for an error message ("" when there are none). */
  private async journalTail(unit: string, o: SystemdOptions): Promise<string> {
    const text = await this.journal(unit, { ...o, lines: 5 }).catch(() => "");
    const lines = text.split("\n").filter((l) => l.trim() && !/^-- (No entries|Journal begins|Logs begin)/.test(l));
    return lines.length ? `\nlast journal lines of ${unit}:\n${lines.join("\n")}` : "";
  }
}

function describeState(info: Record<string, string>): string {
  const parts = [`ActiveState ${info.ActiveState ?? "unknown"}`];
  if (info.SubState) parts.push(`SubState ${info.SubState}`);
  if (info.Result && info.Result !== "success") parts.push(`Result ${info.Result}`);
  return parts.join(", ");
}
