// When a systemd guest is at rest, so that its snapshot may be saved: every machine restored
// from it starts where this one stood, so a service caught mid-start (active, not yet
// listening: lighttpd is `active` about 1.5 s before it listens under TCG) would be mid-start
// in every restored machine too, forever.
//
// The rule, checked inside the guest by one backdoor command (bash builtins only while it
// watches, so that watching does not itself fork or load the CPU):
//   1. systemd has booted up (`is-system-running --wait`) and has no queued job
//      (`systemctl list-jobs` empty): nothing is still starting or stopping;
//   2. then, for a quiet window (QUIET_S): no process was forked (/proc/stat `processes`),
//      the set of listening sockets did not change (/proc/net/tcp, tcp6, unix), and the CPU
//      was busy less than BUSY_PERCENT of the time (/proc/stat `cpu`, less the watcher's own).
// (1) catches what systemd knows is starting; (2) catches what it cannot know: a Type=simple
// service that works (CPU), runs a helper (fork) or opens its socket (listeners) after systemd
// called it started. What it cannot see is a service that sleeps longer than the window
// before it does anything: such a unit should tell systemd when it is ready (Type=notify,
// Type=forking, or socket activation). If the guest is not at rest after LIMIT_S, the shape
// is not saved (the reason is logged) and later machines of it boot cold.

import { createHash } from "node:crypto";

/** Seconds the guest must stay quiet. */
export const QUIET_S = 2;
/** CPU busy above this share of the quiet window is not rest. */
export const BUSY_PERCENT = 30;
/** Seconds after boot-up to give up waiting. */
export const LIMIT_S = 30;

/** Prints "at rest after S s" (status 0), or why not after LIMIT_S (status 1). */
export const AT_REST_SCRIPT = `
set +eu +o pipefail # the backdoor runs commands with them; this script checks what it needs
systemctl is-system-running --wait >/dev/null 2>&1
quiet_us=$((${QUIET_S} * 1000000)); limit_us=$((${LIMIT_S} * 1000000))
fifo=/run/haltpoint-at-rest.$$; mkfifo "$fifo"; exec 9<>"$fifo"; rm -f "$fifo"
now() { t=\${EPOCHREALTIME/./}; }
nap() { read -r -t "$1" -u 9 _ || true; }
sample() {
  local k a b c d e f g h rest l st
  while read -r k a b c d e f g h rest; do
    case $k in
      cpu) busy=$((a + b + c + f + g)); total=$((a + b + c + d + e + f + g + h)) ;;
      processes) forks=$a ;;
    esac
  done </proc/stat
  # Not this watcher's own work (its utime and stime, in the same clock ticks).
  read -r -a st </proc/$BASHPID/stat
  busy=$((busy - st[13] - st[14]))
  listeners=
  for l in /proc/net/tcp /proc/net/tcp6; do
    while read -r k a b c rest; do [ "$c" = 0A ] && listeners+=" $a"; done <"$l"
  done
  while read -r k a b c d e f rest; do [ "$c" = 00010000 ] && [ "$e" = 01 ] && listeners+=" $rest"; done </proc/net/unix
}
now; start=$t; why=
while :; do
  jobs=$(systemctl list-jobs --no-legend 2>/dev/null | wc -l)
  if [ "$jobs" = 0 ]; then
    sample; f0=$forks; b0=$busy; t0=$total; l0=$listeners; now; w0=$t; why=
    while now; ((t - w0 < quiet_us)); do
      nap 0.5; sample
      if ((forks != f0)); then why="processes were still being started"; break; fi
      if [ "$listeners" != "$l0" ]; then why="sockets were still being opened"; break; fi
    done
    if [ -z "$why" ] && (((busy - b0) * 100 > (total - t0) * ${BUSY_PERCENT})); then
      why="the CPU was busy $(((busy - b0) * 100 / (total - t0 > 0 ? total - t0 : 1)))% of the time"
    fi
    if [ -z "$why" ]; then now; echo "at rest after $(((t - start) / 1000)) ms"; exit 0; fi
  else
    why="systemd had $jobs queued jobs: $(systemctl list-jobs --no-legend 2>/dev/null | awk '{print $2}' | head -3 | tr '\\n' ' ')"
  fi
  now; if ((t - start > limit_us)); then echo "not at rest after ${LIMIT_S} s: $why"; exit 1; fi
  nap 0.25
done
`;

/** The rule as one word, part of a systemd guest's snapshot key (snapshot-store.ts). */
export const AT_REST_RULE = createHash("sha256").update(AT_REST_SCRIPT).digest("hex").slice(0, 16);
