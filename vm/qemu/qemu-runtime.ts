import type { DebianImage } from "../image/debian-image.ts";
import type { RevivedMachine } from "./saved-machine.ts";
import type { RunAs } from "./unprivileged-qemu.ts";

/** What the main thread decided for every qemu machine of the run. */
export interface QemuRuntime {
  kernel: string;
  initrd: string;
  accel: "kvm" | "tcg";
  /** Snapshot boots for machines of haltpoint's own image (off with --no-snapshot-boot). */
  snapshotBoot?: boolean;
  /** `haltpoint revive`: these machines load their state from a bundle and stay frozen. */
  revive?: Record<string, RevivedMachine>;
  /** `haltpoint revive` as root: the revived QEMUs (and their zstd) run as this uid (unprivileged-qemu.ts). */
  reviveRunAs?: RunAs;
  /** Debian guests (node option `image`), by debianSpecId of their packages: the image, or why there is none. */
  debian?: Record<string, DebianImage | { error: string }>;
  /**
   * bench/vm and bench/debian only: restore the way haltpoint did before a change, to measure
   * the change against it in the same bench run. `streamedRam`: the RAM in the zstd stream
   * (not mapped, mapped-ram.ts); `identity`: the identity step in a round trip of its own after
   * the shell's setup, with a program per fact or (`"own-round-trip"`) with builtins; or
   * (`"with-setup"`) sent along with the shell's setup, in a command's subshell, with `dmesg`
   * and `date` (not what the snapshot's shell prepared, guest-restore-prep.ts); `qmpRetryMs`:
   * QMP's socket tried every this many ms while QEMU starts (before: 50; qmp.ts retryMs);
   * `noPerlClock`: a guest without busybox sets its clock with a `date` program, not the perl
   * helper its shell prepared (guest-restore-prep.ts restorePrep).
   */
  restoreAsBefore?: { streamedRam?: boolean; identity?: "programs" | "own-round-trip" | "with-setup"; qmpRetryMs?: number; noPerlClock?: boolean };
}
