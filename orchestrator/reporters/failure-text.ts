import type { AbortCause, BudgetOverrun, Failure, FailureCause, HaltRefusal, Notice, StopReason } from "../../common/failure-kinds.ts";
import { isOrchestratorCause } from "../../common/failure-kinds.ts";

// The words for common/failure-kinds.ts: the one place a failure kind, a stop reason
// or a notice becomes English. The texts are the ones haltpoint printed before the kinds
// existed (reports, logs and people's greps depend on them).

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** One cause, as the orchestrator says it; a script's own kinds have no words of their own (its error has them). */
export function causeText(c: FailureCause): string {
  switch (c.kind) {
    case "global-timeout":
      return `global timeout of ${c.seconds} s exceeded`;
    case "interrupted":
      return c.signal ? `interrupted (${c.signal})` : "interrupted";
    case "superseded":
      return `superseded: ${c.by}`;
    case "worker-crashed":
      return `worker crashed: ${c.message}`;
    case "worker-killed":
      return `worker killed after ${c.graceMs / 1000} s`;
    case "no-result":
      return "the worker ended without a result";
    case "not-admitted":
      return c.over ? overrunText(c.over) : `the qemu backend is not ready: ${c.qemuUnavailable ?? "unknown"}`;
    case "leftovers":
      return `killed leftover processes of ${c.machines.join(", ")}`;
    case "hosts-lost":
      return `every host that took it died holding it (${c.hosts.join(", ")})`;
    case "command-failed":
      return "a machine command failed";
    case "boot-failed":
      return "a machine did not boot";
    case "machine-died":
      return "a machine went away";
    case "load-error":
      return "the test file could not be loaded";
    case "assertion":
      return "the test script failed";
  }
}

/** What the orchestrator did to a failed attempt (the report's `reason`): undefined when only the script failed. */
export function failureReason(f: Failure): string | undefined {
  const causes = [f, ...(f.also ?? [])].filter(isOrchestratorCause);
  if (!causes.length) return undefined;
  // The script's own error after an abort usually is the abort's words (the worker throws them).
  const saw = f.scriptSaw !== undefined && f.scriptSaw !== causeText(f) ? ` (the script then saw: ${f.scriptSaw})` : "";
  return causes.map(causeText).join("; ") + saw;
}

/** The words for an abort cause (the worker hands the cause, typed, never its words). */
export function abortText(c: AbortCause): string {
  return causeText(c);
}

export function overrunText(o: BudgetOverrun): string {
  const over: string[] = [];
  if (o.memoryMiB) over.push(`${o.memoryMiB.need} MiB of memory (budget ${o.memoryMiB.budget} MiB, --memory)`);
  return `its qemu machines need ${over.join(" and ")}: it can never fit on this host`;
}

export function haltRefusalText(r: HaltRefusal): string {
  switch (r.kind) {
    case "max-frozen":
      return `not halted: ${r.limit} test${r.limit === 1 ? " is" : "s are"} already halted (--max-frozen ${r.limit})`;
    case "console-failed":
      return `not halted: ${r.message}`;
    case "stopping":
      return abortText(r.cause);
    case "no-broker":
      return "no breakpoint broker";
    case "released":
      return r.by;
  }
}

export function stopText(s: StopReason): string {
  switch (s.kind) {
    case "until-fail":
      return `--until-fail: ${s.run} ${s.flaky ? "was flaky (--flaky-fails)" : "failed"}; starting no more runs`;
    case "max-fail":
      return `--max-fail ${s.limit}: ${s.run} ${s.flaky ? "was flaky (--flaky-fails)" : "failed"}${s.limit > 1 ? ` (${s.limit} failed runs)` : ""}; starting no more runs`;
    case "interrupted":
      return s.signal ? `interrupted (${s.signal}): starting no more runs` : "interrupted: starting no more runs";
    case "superseded":
      return `superseded (${s.by}): stopping this run of the suite`;
    case "hosts-gone":
      return `no host alive for ${Math.round(s.waitedMs / 1000)} s${s.hosts.length ? ` (${plural(s.hosts.length, "host")} died holding runs: ${s.hosts.join(", ")})` : ""}; starting no more runs`;
  }
}

export function noticeText(n: Notice): string {
  switch (n.kind) {
    case "stopped":
      return stopText(n.stop);
    case "signal":
      return n.again ? `${n.signal} again: killing the running tests` : `${n.signal}: starting no more tests, stopping the running ones (again to kill them now)`;
    case "holding-breakpoints":
      return `every other test is done; holding ${plural(n.count, "breakpoint")} (haltpoint ls / attach ID / release ID); Ctrl-C releases them all`;
    case "swept-state-dirs":
      return `removed ${n.dirs.length} state ${n.dirs.length === 1 ? "directory" : "directories"} of haltpoint runs that no longer exist: ${n.dirs.join(", ")}`;
    case "pool-error":
      return `a worker thread failed outside any test: ${n.message}`;
    case "run-source-failed":
      // Said as it was when it was a pool-error (its words are unchanged).
      return `a worker thread failed outside any test: the run source failed: ${n.message}`;
    case "late-error":
      return `late error from ${n.run}, after it finished (${n.errorKind}): ${n.message}; its result stands, its worker thread is replaced`;
    case "no-control-socket":
      return `no control socket (haltpoint ls/release will not see this run): ${n.message}`;
    case "no-tests":
      return `no test selected: ${n.reason}${n.passWithNoTests ? " (--pass-with-no-tests)" : " (exit status 4; --pass-with-no-tests allows it)"}`;
    case "qemu-unavailable":
      return `the qemu backend is not ready: ${n.message}`;
    case "runs-alone":
      return `${n.test} needs ${n.vcpus} vCPUs, more than the budget of ${n.budget.vcpus} (--cores ${n.budget.cores} × --cpu-overcommit ${n.budget.cpuOvercommit}): it runs alone, with no other qemu test beside it`;
    case "run-log-truncated":
      return `cannot write run logs (${n.error}, first at ${n.file}): logs are truncated from here on; results and reports are not affected`;
    case "teardown-failed":
      return `teardown: ${n.what} failed: ${n.message}`;
    case "info":
      return n.text;
  }
}
