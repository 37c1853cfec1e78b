import { type BackdoorShell, ShellClosedError, ShellTimeoutError } from "./backdoor-shell.ts";
import { ConnectionLostError } from "./errors.ts";
import { BaseMachine } from "./machine.ts";

/**
 * A machine driven through a backdoor shell (vm/backdoor-shell.ts) in a process of its own
 * (a sandbox's bash, a QEMU): the layer both backends share between BaseMachine and their
 * process handling. One command path, one set of messages for a timeout and for a process
 * that went away while a command ran.
 */
export abstract class ShellMachine extends BaseMachine {
  protected shell: BackdoorShell | undefined;
  /** Settles when the machine's process has exited; `exitHow` then says how ("signal 9"). */
  protected exited: Promise<void> = Promise.resolve();
  protected exitHow: string | undefined;
  /** The process the shell lives in, for messages: "shell" or "qemu". */
  protected abstract readonly processName: string;

  /** Stop backdoor command `id`, which ran past its timeout (its tree, in the machine). */
  protected abstract killCommand(id: number): void;

  /** Wait for whatever must come before a command (a rebooting guest's new shell). */
  protected async beforeCommand(): Promise<void> {}

  protected async rawExecute(cmd: string, timeoutMs: number): Promise<{ status: number; stdout: Buffer }> {
    await this.beforeCommand();
    if (!this.shell) throw this.error("not started");
    try {
      return await this.shell.run(cmd, timeoutMs, (id) => this.killCommand(id));
    } catch (e) {
      if (e instanceof ShellTimeoutError) throw this.error(`command \`${cmd}\` ${e.message}`, cmd);
      if (e instanceof ShellClosedError) {
        // The shell's stream closes a moment before the exit status is known: wait for it to name the cause.
        await Promise.race([this.exited, new Promise((r) => setTimeout(r, 1000))]);
        const why = this.exitHow ? `${this.processName} exited (${this.exitHow})` : e.message;
        throw new ConnectionLostError(this.name, `command \`${cmd}\` lost its shell: ${why}`, cmd);
      }
      throw e;
    }
  }
}
