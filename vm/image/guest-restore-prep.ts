// What a guest's backdoor shell prepares just before its snapshot is saved, so that every guest
// restored from it gets its identity (guest-personalize.ts) with the least work. Under TCG a
// restored guest runs every code path with a cold translation cache: its first program costs
// about 40 ms (exec, then busybox's start), a fork about 20 ms, and `dmesg` reads and formats
// the whole kernel log (~490 records). Prepared here, while the guest is still booting cold:
//   - `hp_kmsg`: a descriptor on /dev/kmsg, read to its end now, so that after a restore it
//     holds only the records logged since: the CRNG's reseed among the first (bash's `read`
//     reads /dev/kmsg a record at a time, checked on this guest's kernel);
//   - `hp_ai`/`hp_ao`: the pipes of a clock helper waiting for the time: busybox's shell in
//     haltpoint's own image (its `exec date` runs the applet in the helper itself), perl in a
//     Debian guest (no busybox there; perl-base is Essential), so the restored guest's clock is
//     set without loading a program.
// Both are the backdoor bash's own shell variables (the prep runs in the shell itself, not in
// a command's subshell), so every later command's subshell has them. The identity command falls
// back to `dmesg` and a `date` program when either is missing or does not answer. The snapshot
// key holds restorePrep().key (snapshot-store.ts): a snapshot saved without this prep, or with
// another version of it or of the shell's setup, is never restored with these assumptions.

import { createHash } from "node:crypto";
import { setupScript } from "../backdoor-shell.ts";
import { RUNNING_FILE } from "../qemu/kill-port.ts";
import { DMESG_RESEED_WAIT, RESEED_FILE, UPTIME_LINE, VMFORK_RESEED_LINE } from "./guest-personalize.ts";

/** Where the backdoor shell writes each command's output (BackdoorShell's setup, sent by guest-shell-link.ts). */
export const GUEST_OUT_FILE = "/tmp/.hp-out";

/**
 * Bash: read records from descriptor `fd` until one holds `line` (then s=1), at most 500; the
 * first `read -t` timeout reads on, the second ends the wait (see __hp_restored below). Uses the
 * caller's variables r, s, i and o (o=0 before).
 */
export const waitForRecord = (fd: string, line: string): string =>
  `for ((i = 0; i < 500; i++)); do if read -r -t 1 -u ${fd} r; then [[ $r == *'${line}'* ]] && { s=1; break; }; elif (($? > 128)); then ((o++)) && break; fi; done`;

/**
 * The clock helper of a guest without busybox (a Debian guest: perl-base is Essential there, so
 * every Debian system has /usr/bin/perl): one line, the time; clock_settime(CLOCK_REALTIME)
 * through perl's `syscall` (227 on x86_64, the only guest architecture), then the time as the
 * answer. Measured on the Debian guest: `date` as a program after a restore is a fork, an
 * exec and the dynamic loader, all cold under TCG (about 13,000 translated blocks of the
 * restore's 48,000); the waiting perl runs a few hundred.
 */
const PERL_CLOCK_HELPER = 'my $t = <STDIN>; defined $t or exit 1; chomp $t; syscall(227, 0, pack("q2", $t, 0)) == 0 or exit 1; $| = 1; print "$t\\n"';

/**
 * Sent to the backdoor bash as a line of its own (run by the shell itself, not in a command's
 * subshell, so that what it opens stays open and what it defines stays defined); errors go to
 * the shell's stderr (the console). The fifos are opened in the order that does not block: the
 * helper opens its stdin for reading, which waits for a writer, opened next; then the other
 * way round. The shell opens the helper's stdin read-write: a write to it can never raise
 * SIGPIPE, which would end the backdoor shell, even were the helper gone (its answer is then
 * an end of file at once, and `date` runs as a program). The helper waits for one line, the
 * time: in haltpoint's guest busybox's shell, whose `exec date` runs the applet in the helper
 * itself (busybox runs such applets without an exec); in a guest without busybox (Debian)
 * PERL_CLOCK_HELPER. Either way setting the clock after a restore costs no fork and no exec;
 * the helper answers with the time it set and is gone. `perlClock` false: the prep as it was
 * before the perl helper (bench/debian's column before it).
 */
const prepScript = (perlClock: boolean): string =>
  "hp_h=(); if [ -x /bin/busybox ]; then hp_h=(/bin/busybox sh -c 'read -r t && exec date -s \"@$t\"'); " +
  (perlClock ? `elif [ -x /usr/bin/perl ]; then hp_h=(/usr/bin/perl -e '${PERL_CLOCK_HELPER}'); ` : "") +
  "fi; " +
  "if ((${#hp_h[@]})); then rm -f /run/.hp-ash.i /run/.hp-ash.o; mkfifo -m 0600 /run/.hp-ash.i /run/.hp-ash.o && " +
  "{ \"${hp_h[@]}\" </run/.hp-ash.i >/run/.hp-ash.o & exec {hp_ai}<>/run/.hp-ash.i {hp_ao}</run/.hp-ash.o; rm -f /run/.hp-ash.i /run/.hp-ash.o; }; fi; unset hp_h; " +
  "exec {hp_kmsg}</dev/kmsg && while read -t 0 -u $hp_kmsg && read -r -u $hp_kmsg _; do :; done\n" +
  // The identity of a restored guest (guest-personalize.ts preparedIdentity): defined now, so
  // that the waking guest reads and parses only its call. Arguments: the host's time (s), the
  // host's 32 random bytes (hex, made printf escapes by bash 5.2's `&` in a substitution: the
  // waking guest reads a third of the bytes), the hostname, the /etc/hosts lines. Each wait
  // has a timeout (it runs in the shell itself: nothing could kill it); the descriptors are
  // closed once used, so that no command after it inherits them. The helper gets the time
  // first and its answer is read after the reseed: it sets the clock while the shell waits for
  // the kernel's record (a single CPU: the wait is the only time it can run beside the shell).
  "__hp_restored() { local t=$1 r= a=; read -r r < /sys/class/rtc/rtc0/since_epoch 2>/dev/null && ((r > t)) && t=$r; " +
  "[[ -n ${hp_ai-} ]] && echo \"$t\" >&$hp_ai; " +
  "read -r hp_u0 _ < /proc/uptime; local s= i o=0; " +
  // Records since the snapshot, one per read, until the reseed's (a read that fails otherwise
  // — records overwritten — goes on; a second timeout ends it: then dmesg). bash times `read -t`
  // by the wall clock, which the helper moves forward (by as long as the snapshot was kept):
  // a read under way then times out at once, after a first byte, the rest of the record left
  // in bash's read buffer for the next `read`. So the first timeout reads on (that next read
  // gets the record's rest); left as it was, the wait fell back to dmesg and the uptime read
  // after it got the record's rest (seen with the perl helper, which is faster than the reseed).
  `if [[ -n \${hp_kmsg-} ]]; then ${waitForRecord("$hp_kmsg", VMFORK_RESEED_LINE)}; exec {hp_kmsg}<&-; unset hp_kmsg; fi; ` +
  `[[ -n $s ]] || { ${DMESG_RESEED_WAIT}; }; ` +
  "read -r hp_u1 _ < /proc/uptime; " +
  // The answer, likewise: tried again if the clock's jump ended the first try before a byte.
  "if [[ -n ${hp_ai-} ]]; then read -r -t 5 a <&$hp_ao || [[ -n $a ]] || read -r -t 5 a <&$hp_ao; exec {hp_ai}>&- {hp_ao}<&-; unset hp_ai hp_ao; fi; " +
  '[[ -n $a ]] || date -s "@$t" > /dev/null || return; ' +
  `printf '${UPTIME_LINE} %s\\n' "$hp_u0" "$hp_u1" > ${RESEED_FILE} && printf "\${2//??/\\\\x&}" > /dev/urandom && ` +
  `echo "$3" > /proc/sys/kernel/hostname && echo "$3" > /etc/hostname && printf '%s\\n' "\${@:4}" > /etc/hosts; }\n`;

/** A backdoor command: prints what the prep left ("identity" and "kmsg", "clock-helper"), for the saver's log. */
export const RESTORE_PREP_CHECK = `declare -F __hp_restored > /dev/null && echo -n identity; [[ -n \${hp_kmsg-} ]] && echo -n " kmsg"; [[ -n \${hp_ai-} ]] && echo -n " clock-helper"; echo`;

/** Sent to the saving guest's shell once its snapshot is saved: it goes on as a machine of its own and uses none of it. */
export const RESTORE_PREP_UNDO = "[[ -n ${hp_ai-} ]] && exec {hp_ai}>&- {hp_ao}<&-; [[ -n ${hp_kmsg-} ]] && exec {hp_kmsg}<&-; unset hp_ai hp_ao hp_kmsg\n";

export interface RestorePrep {
  /** Sent to the backdoor bash as a line of its own just before the save (see above). */
  script: string;
  /** What a snapshot's shell holds (its setup and this prep): part of the snapshot key (SnapshotShape.shellPrep). */
  key: string;
}

const prep = (perlClock: boolean): RestorePrep => {
  const script = prepScript(perlClock);
  return { script, key: createHash("sha256").update(JSON.stringify([setupScript(GUEST_OUT_FILE, RUNNING_FILE), script])).digest("hex").slice(0, 16) };
};
const PREPS = { now: prep(true), withoutPerl: prep(false) };

/**
 * The prep of a snapshot's shell. `rt.restoreAsBefore.noPerlClock` (bench/debian only): as before
 * the perl helper, a guest without busybox sets its clock with a `date` program.
 */
export const restorePrep = (rt: { restoreAsBefore?: { noPerlClock?: boolean } }): RestorePrep => (rt.restoreAsBefore?.noPerlClock ? PREPS.withoutPerl : PREPS.now);
