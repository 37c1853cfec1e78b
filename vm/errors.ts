/** Which way a machine failed the test (common/failure-kinds.ts); unset: a misuse or a wait. */
export type MachineFailureKind = "command-failed" | "boot-failed" | "machine-died";

/** A Machine API call failed: the message always names the machine. */
export class MachineError extends Error {
  override name = "MachineError";
  constructor(
    readonly machine: string,
    /** What went wrong, without the machine's name (for lines that already name it). */
    readonly detail: string,
    readonly command?: string,
    /** Set where the failure is made (a command's status, a boot); start() marks what it throws. */
    public kind?: MachineFailureKind,
  ) {
    super(`machine ${machine}: ${detail}`);
  }
}

/** The backend cannot do this (e.g. `screenshot` on a local machine). */
export class NotSupportedError extends MachineError {
  override name = "NotSupportedError";
  constructor(machine: string, method: string, backend: string) {
    super(machine, `${method}() is not supported by the ${backend} backend`);
  }
}

/** The machine went away (powered off, rebooted, QEMU exited) while a command ran. */
export class ConnectionLostError extends MachineError {
  override name = "ConnectionLostError";
  override kind: MachineFailureKind = "machine-died";
}
