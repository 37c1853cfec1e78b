import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { MessagePort } from "node:worker_threads";
import type { TaskControl, WorkerEvent } from "../../common/events.ts";
import { isLoopbackHost } from "../console/console-gate.ts";
import { ConsoleServer } from "../console/console-server.ts";
import type { BreakpointInfo } from "../control/control-protocol.ts";
import type { HaltRefusal } from "../../common/failure-kinds.ts";
import type { BreakpointEvent, BrokerRun } from "./breakpoint-events.ts";
import { bestEffort, stderrTeardownLog, type TeardownLog } from "../../common/teardown.ts";

type HaltEvent = Extract<WorkerEvent, { t: "halt" }>;
type BundleEvent = Extract<WorkerEvent, { t: "bundle" }>;

/** A bundle takes about a second per guest to save; past this something is wrong. */
const SAVE_TIMEOUT_MS = 300_000;

export interface BrokerOptions {
  /** First telnet port to try (--debug-port). */
  startPort: number;
  /** Address the consoles listen on (--debug-bind); loopback unless asked. */
  host: string;
  /** At most this many tests halted at once (--max-frozen). */
  maxFrozen: number;
  /** A breakpoint nobody releases is released after this long (--freeze-ttl). */
  ttlMs: number;
  /** Private directory under which each breakpoint gets its socket directory. */
  socketRoot: string;
  /** Where a failed teardown step is said (default: stderr). */
  log?: TeardownLog;
}

interface Held<PlannedRun extends BrokerRun> {
  info: BreakpointInfo;
  run: PlannedRun;
  taskPort: MessagePort;
  server: ConsoleServer;
  ttl: NodeJS.Timeout;
  /** The socket directory is the broker's own (made for this breakpoint), not the run's. */
  ownsSocketDir: boolean;
}

/**
 * The main thread's half of breakpoints: gives each halted test an id, a telnet port (the
 * first free one from --debug-port) and a private socket directory, relays its console to
 * the worker, and releases it on request, on --freeze-ttl, or at the end of the run.
 * The id is the console's port: unique on this host, so `haltpoint attach ID` is never
 * ambiguous across several orchestrators.
 */
export class BreakpointBroker<PlannedRun extends BrokerRun = BrokerRun> {
  private held = new Map<string, Held<PlannedRun>>();
  /** Registrations in progress count against --max-frozen too. */
  private registering = 0;
  private nextSaveId = 1;
  private readonly saves = new Map<number, (e: BundleEvent) => void>();

  constructor(
    private readonly o: BrokerOptions,
    /** Where its events go (the orchestrator's reporters). */
    private readonly tell: (e: BreakpointEvent<PlannedRun>) => void,
  ) {}

  get count(): number {
    return this.held.size;
  }

  list(): BreakpointInfo[] {
    return [...this.held.values()].map((h) => h.info);
  }

  /** A worker halted: hold it (answer `halted`) or refuse (answer `halt-refused`). */
  async register(run: PlannedRun, e: HaltEvent, taskPort: MessagePort): Promise<BreakpointInfo | undefined> {
    const answer = (m: TaskControl): void => taskPort.postMessage(m);
    if (this.held.size + this.registering >= this.o.maxFrozen) {
      const refusal: HaltRefusal = { kind: "max-frozen", limit: this.o.maxFrozen };
      e.console.close();
      answer({ t: "halt-refused", refusal });
      this.tell({ kind: "breakpoint-refused", run, refusal });
      return undefined;
    }
    this.registering++;
    try {
      // Beyond loopback the peer may be on another host, where no uid can be checked: a
      // per-breakpoint secret, printed once to the owner (and handed to `haltpoint attach`
      // over the owner-only control socket), is asked for first.
      const token = isLoopbackHost(this.o.host) ? undefined : randomBytes(18).toString("base64url");
      const server = await ConsoleServer.listen(e.console, {
        startPort: this.o.startPort,
        host: this.o.host,
        token,
        onRefused: (message) => this.tell({ kind: "console-refused", run, message }),
      });
      const id = String(server.tcpPort);
      // A run with an SSH backdoor already has its sockets (made when its machines were
      // built, in its private state directory): that directory is the breakpoint's.
      const ownsSocketDir = !e.socketDir;
      const socketDir = e.socketDir ?? join(this.o.socketRoot, `bp-${id}`);
      if (ownsSocketDir) {
        await rm(socketDir, { recursive: true, force: true });
        await mkdir(socketDir, { recursive: true, mode: 0o700 });
      }
      const info: BreakpointInfo = {
        id,
        key: run.key,
        test: run.test.name,
        run: run.index,
        since: Date.now(),
        host: server.host,
        port: server.tcpPort,
        machines: e.machines,
        frozen: e.frozen,
        socketDir,
        sockets: e.sockets ?? [],
        orchestratorPid: process.pid,
        ...(token ? { token } : {}),
        reason: e.kind === "failure" ? (e.error?.message ?? "failed") : "debug.breakpoint()",
      };
      const ttl = setTimeout(() => this.release(id, `--freeze-ttl (${Math.round(this.o.ttlMs / 1000)} s) expired`), this.o.ttlMs);
      ttl.unref();
      this.held.set(id, { info, run, taskPort, server, ttl, ownsSocketDir });
      answer({ t: "halted", id, host: server.host, port: server.tcpPort, socketDir });
      this.tell({ kind: "breakpoint", run, info });
      return info;
    } catch (err) {
      e.console.close();
      const refusal: HaltRefusal = { kind: "console-failed", message: (err as Error).message };
      answer({ t: "halt-refused", refusal });
      this.tell({ kind: "breakpoint-refused", run, refusal });
      return undefined;
    } finally {
      this.registering--;
    }
  }

  /** Ask the worker to leave the breakpoint; it answers with `resumed`. */
  release(id: string, by: string): boolean {
    const h = this.held.get(id);
    if (!h) return false;
    h.taskPort.postMessage({ t: "release", by } satisfies TaskControl);
    return true;
  }

  /** `haltpoint save ID`: the worker writes its halted test to a bundle at `dir` (it stays halted). */
  save(id: string, dir: string): Promise<BundleEvent> {
    const h = this.held.get(id);
    if (!h) return Promise.reject(new Error(`no breakpoint ${id} in this run`));
    const reqId = this.nextSaveId++;
    return new Promise<BundleEvent>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.saves.delete(reqId);
        reject(new Error(`breakpoint ${id}: no bundle after ${SAVE_TIMEOUT_MS / 1000} s`));
      }, SAVE_TIMEOUT_MS);
      this.saves.set(reqId, (e) => {
        clearTimeout(timer);
        this.saves.delete(reqId);
        resolve(e);
      });
      h.taskPort.postMessage({ t: "save", reqId, dir } satisfies TaskControl);
    });
  }

  /** The worker's answer to save(). */
  bundleSaved(e: BundleEvent): void {
    if (e.reqId !== undefined) this.saves.get(e.reqId)?.(e);
  }

  releaseAll(by: string): string[] {
    const ids = [...this.held.keys()];
    for (const id of ids) this.release(id, by);
    return ids;
  }

  /** The worker left the breakpoint (or its run ended): close the console, forget it. */
  async ended(id: string, by: string): Promise<void> {
    const h = this.held.get(id);
    if (!h) return;
    this.held.delete(id);
    clearTimeout(h.ttl);
    const log = this.o.log ?? stderrTeardownLog;
    await bestEffort(log, `closing the console of breakpoint ${id}`, h.server.close(`breakpoint ${id} released (${by})`));
    if (h.ownsSocketDir) await bestEffort(log, `removing ${h.info.socketDir}`, rm(h.info.socketDir, { recursive: true, force: true }));
    this.tell({ kind: "breakpoint-end", run: h.run, info: h.info, by });
  }

  async close(): Promise<void> {
    for (const id of [...this.held.keys()]) await this.ended(id, "orchestrator exiting");
  }
}
