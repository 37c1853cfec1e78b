import { ShellMachine } from "./shell-machine.ts";
import { DEFAULT_WAIT_SECONDS, pollUntil } from "./poll.ts";
import { Systemd } from "./systemd-api.ts";
import type { ExecuteResult, Machine, SystemdOptions, UnitWaitOptions, VmMachine, WaitOptions } from "./types.ts";

/** The calls a QEMU guest has and a local sandbox does not (checked against the types below). */
export const VM_ONLY_METHODS = [
  "waitForUnit", "systemctl", "startJob", "stopJob", "getUnitInfo", "getUnitProperty", "requireUnitState", "waitForOpenUnixSocket", "journal", "screenshot", "sendMonitorCommand", "forwardPort", "block", "unblock", "waitForQmpEvent", "sendKey", "sendChars", "sendConsole", "getScreenText", "getScreenTextVariants", "waitForText", "reboot", "waitForShutdown",
] as const satisfies readonly Exclude<keyof VmMachine, keyof Machine>[];
// Every VmMachine-only call is in the list (a new one that is not fails to type-check here).
const _allListed: [Exclude<Exclude<keyof VmMachine, keyof Machine>, (typeof VM_ONLY_METHODS)[number]>] extends [never] ? true : never = true;
void _allListed;

/**
 * A machine with an operating system of its own (a QEMU guest): besides what every machine
 * has, systemd and a screen. The backend supplies the screen, keyboard, monitor and network
 * (vm/qemu/qemu-machine.ts); a local sandbox is a ShellMachine and has none of these, in its
 * type too (VmMachine is what a test sees of a qemu node).
 */
export abstract class GuestMachine extends ShellMachine implements VmMachine {
  // The systemd calls (vm/systemd-api.ts): NixOS semantics, errors naming machine and unit.
  private systemdApi: Systemd | undefined;

  private systemd(_method?: string): Systemd {
    return (this.systemdApi ??= new Systemd({ name: this.name, execute: (cmd, o) => this.execute(cmd, o), log: (m) => this.log(m) }));
  }

  async waitForUnit(unit: string, opts: UnitWaitOptions = {}): Promise<void> {
    return this.systemd("waitForUnit").waitForUnit(unit, opts);
  }

  async systemctl(args: string | string[], opts: SystemdOptions = {}): Promise<ExecuteResult<string>> {
    return this.systemd("systemctl").systemctl(args, opts);
  }

  async startJob(unit: string, opts: SystemdOptions = {}): Promise<ExecuteResult<string>> {
    return this.systemd("startJob").systemctl(["start", unit], opts);
  }

  async stopJob(unit: string, opts: SystemdOptions = {}): Promise<ExecuteResult<string>> {
    return this.systemd("stopJob").systemctl(["stop", unit], opts);
  }

  async getUnitInfo(unit: string, opts: SystemdOptions = {}): Promise<Record<string, string>> {
    return this.systemd("getUnitInfo").getUnitInfo(unit, opts);
  }

  async getUnitProperty(unit: string, property: string, opts: SystemdOptions = {}): Promise<string> {
    return this.systemd("getUnitProperty").getUnitProperty(unit, property, opts);
  }

  async requireUnitState(unit: string, state = "active", opts: SystemdOptions = {}): Promise<void> {
    return this.systemd("requireUnitState").requireUnitState(unit, state, opts);
  }

  async waitForOpenUnixSocket(path: string, opts: WaitOptions & { isDatagram?: boolean } = {}): Promise<void> {
    return this.systemd().waitForOpenUnixSocket(path, opts);
  }

  async journal(unit?: string, opts: SystemdOptions & { lines?: number } = {}): Promise<string> {
    return this.systemd("journal").journal(unit, opts);
  }

  /** Text on the machine's screen, read by OCR (tesseract). */
  abstract getScreenText(): Promise<string>;

  /** Several OCR readings of one screendump (NixOS `get_screen_text_variants`). */
  abstract getScreenTextVariants(): Promise<string[]>;

  async waitForText(regex: RegExp | string, opts: WaitOptions = {}): Promise<string> {
    const re = typeof regex === "string" ? new RegExp(regex) : regex;
    this.log(`waiting for ${re} to appear on the screen`);
    return this.wrapWait(undefined, () =>
      // As NixOS's wait_for_text: every reading of one screendump is tried (a console's light
      // text on black is read better by one, a scattered line by another).
      pollUntil(`${re} on the screen`, opts.timeout ?? DEFAULT_WAIT_SECONDS, async () => {
        const texts = await this.getScreenTextVariants();
        for (const text of texts) {
          const m = re.exec(text);
          if (m) return { done: true, value: m[0] };
        }
        return { done: false, last: `OCR read: ${JSON.stringify((texts[0] ?? "").replace(/\s+/g, " ").trim().slice(-200))}` };
      }),
    );
  }

  abstract screenshot(name: string): Promise<string>;
  abstract sendMonitorCommand(cmd: string): Promise<string>;
  abstract forwardPort(hostPort: number, guestPort: number): Promise<void>;
  abstract block(): Promise<void>;
  abstract unblock(): Promise<void>;
  abstract waitForQmpEvent(filter: Parameters<VmMachine["waitForQmpEvent"]>[0], opts?: WaitOptions): ReturnType<VmMachine["waitForQmpEvent"]>;
  abstract sendKey(keys: string, opts?: { delay?: number }): Promise<void>;
  abstract sendChars(text: string, opts?: { delay?: number }): Promise<void>;
  abstract sendConsole(text: string): Promise<void>;
  abstract reboot(): Promise<void>;
  abstract waitForShutdown(opts?: WaitOptions): Promise<void>;
}
