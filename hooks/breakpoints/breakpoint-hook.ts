import { haltpointCommand } from "../ssh/ssh-lines.ts";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import type { BaseMachine } from "../../vm/machine.ts";
import { serializeError, type TaskControl, type WorkerEvent } from "../../common/events.ts";
import { ConsoleReplHost } from "../console/console-repl.ts";
import { CONSOLE_NAMES } from "../../common/context-names.ts";
import { join } from "node:path";
import { dirNameFor } from "../../common/run-dir-names.ts";
import type { BundleSubject } from "../bundles/bundle-writer.ts";
import type { BackdoorSocketInfo } from "../../common/events.ts";
import type { AbortCause } from "../../common/failure-kinds.ts";

type Answer = Extract<TaskControl, { t: "halted" | "halt-refused" }>;

/**
 * The worker's half of a breakpoint. It freezes the test's machines, asks the broker (main
 * thread) to hold the test, serves the debug console REPL inside this worker — where the
 * machines live — and waits until someone releases it.
 */
/** Who ended a breakpoint: a person's or the hook's words (`haltpoint release`), or the orchestrator's abort, as data. */
type LeftBy = string | { aborted: AbortCause };

export class BreakpointHook {
  private answer: ((a: Answer) => void) | undefined;
  private release: ((by: LeftBy) => void) | undefined;
  private pendingRelease: LeftBy | undefined;

  constructor(
    private readonly taskPort: MessagePort,
    private readonly machines: BaseMachine[],
    private readonly emit: (e: WorkerEvent) => void,
    private readonly testName: string,
    /** The run's SSH backdoor sockets, if it has them: the broker hands out this directory. */
    private readonly socketDir?: string,
    /** Those sockets, by machine (the broker's `!!!` lines name them; the main thread reads no directory). */
    private readonly sockets: BackdoorSocketInfo[] = [],
    /** What a bundle of this test records, and where --save-breakpoints puts them. */
    private readonly bundles?: { subject: Omit<BundleSubject, "kind" | "error">; saveDir?: string },
  ) {}

  /** Set while halted: what a bundle saved now would say about the halt. */
  private halt_: { kind: "failure" | "breakpoint"; error?: unknown; id: string } | undefined;

  /** Control messages from the main thread that concern a breakpoint. */
  onControl(m: TaskControl): void {
    if (m.t === "halted" || m.t === "halt-refused") this.answer?.(m);
    else if (m.t === "release") this.leave(m.by);
    else if (m.t === "save") void this.save(m.dir, m.reqId);
    else if (m.t === "abort") {
      this.answer?.({ t: "halt-refused", refusal: { kind: "stopping", cause: m.cause } });
      this.leave({ aborted: m.cause });
    }
  }

  /**
   * Halt here. `failure`: the test failed with `error`; after release it tears down as
   * failed. `breakpoint`: `debug.breakpoint()`; after release the machines thaw and the
   * script goes on. Resolves false if the broker would not hold the test.
   */
  async halt(kind: "failure" | "breakpoint", error?: unknown): Promise<boolean> {
    const frozen: string[] = [];
    for (const m of this.machines) {
      if (m.state !== "running") continue;
      await m.freeze().catch((e: Error) => this.emit({ t: "log", time: Date.now(), machine: m.name, level: "warn", msg: `could not freeze it at the breakpoint: ${e.message}` }));
      if ((m.state as string) === "frozen") frozen.push(m.name);
    }
    const { port1, port2 } = new MessageChannel();
    const answered = new Promise<Answer>((r) => (this.answer = r));
    this.taskPort.postMessage(
      {
        t: "halt",
        time: Date.now(),
        kind,
        error: error === undefined ? undefined : serializeError(error),
        machines: this.machines.map((m) => m.name),
        frozen,
        console: port2,
        socketDir: this.socketDir,
        sockets: this.sockets,
      } satisfies WorkerEvent,
      [port2],
    );
    const pending = this.pendingRelease;
    const a: Answer = pending ? { t: "halt-refused", refusal: typeof pending === "string" ? { kind: "released", by: pending } : { kind: "stopping", cause: pending.aborted } } : await answered;
    this.answer = undefined;
    if (a.t === "halt-refused") {
      port1.close();
      if (kind === "breakpoint") await this.thawAll(frozen);
      return false;
    }

    const released = new Promise<LeftBy>((r) => (this.release = r));
    this.halt_ = { kind, error, id: a.id };
    if (this.pendingRelease) this.leave(this.pendingRelease);
    else if (this.bundles?.saveDir) {
      // Nobody is there to attach (CI): keep the halt as a bundle, and let the run go on.
      const saved = await this.save(join(this.bundles.saveDir, `${dirNameFor(this.testName.replace(/#/g, "-"))}-bp${a.id}`));
      this.leave(saved ? "saved as a bundle (--save-breakpoints)" : "--save-breakpoints could not save it");
    }
    const host = new ConsoleReplHost(port1, {
      context: this.consoleScope(error, () => this.leave("release() in the console")),
      banner: this.banner(kind, a.id, error),
      prompt: `${this.testName}> `,
    });
    const by = await released;
    this.release = undefined;
    this.halt_ = undefined;
    host.close();
    port1.close();
    this.emit(typeof by === "string" ? { t: "resumed", time: Date.now(), by } : { t: "resumed", time: Date.now(), aborted: by.aborted });
    if (kind === "breakpoint") await this.thawAll(this.machines.map((m) => m.name));
    return true;
  }

  /** Save the halted test as a bundle at `dir` and say so in a `bundle` event. True when saved. */
  private async save(dir: string, reqId?: number): Promise<boolean> {
    const h = this.halt_;
    if (!h || !this.bundles) {
      this.emit({ t: "bundle", time: Date.now(), reqId, dir, error: "the test is not halted" });
      return false;
    }
    try {
      const { saveBundle } = await import("../bundles/bundle-writer.ts");
      const r = await saveBundle(dir, this.machines, { ...this.bundles.subject, kind: h.kind, ...(h.error !== undefined ? { error: serializeError(h.error) } : {}) });
      this.emit({ t: "bundle", time: Date.now(), reqId, dir: r.dir, bytes: r.bytes, ms: r.ms, skipped: r.skipped, revivable: r.revivable, imageBytes: r.imageBytes, localMachines: r.localMachines });
      return true;
    } catch (e) {
      this.emit({ t: "bundle", time: Date.now(), reqId, dir, error: (e as Error).message });
      return false;
    }
  }

  private leave(by: LeftBy): void {
    if (this.release) this.release(by);
    else this.pendingRelease ??= by;
  }

  private async thawAll(names: string[]): Promise<void> {
    for (const m of this.machines) if (names.includes(m.name)) await m.thaw().catch((e: Error) => this.emit({ t: "log", time: Date.now(), machine: m.name, level: "warn", msg: `could not thaw it after the breakpoint: ${e.message}` }));
  }

  /** What a console session has in scope: the machines and CONSOLE_NAMES (common/context-names.ts). */
  consoleScope(error: unknown, release: () => void): Record<string, unknown> {
    const byName = (name?: string): BaseMachine[] => {
      if (name === undefined) return this.machines;
      const m = this.machines.find((x) => x.name === name);
      if (!m) throw new Error(`no machine '${name}' (machines: ${this.machines.map((x) => x.name).join(", ")})`);
      return [m];
    };
    const ctx: Record<string, unknown> = {
      machines: this.machines,
      error,
      /** thaw() every machine, or thaw("server") one. */
      thaw: async (name?: string) => {
        for (const m of byName(name)) await m.thaw();
        return `thawed: ${byName(name).map((m) => m.name).join(", ")}`;
      },
      freeze: async (name?: string) => {
        for (const m of byName(name)) await m.freeze();
        return `frozen: ${byName(name).map((m) => m.name).join(", ")}`;
      },
      release: () => {
        release();
        return "released";
      },
    };
    for (const m of this.machines) ctx[m.name] = m;
    return ctx;
  }

  private banner(kind: "failure" | "breakpoint", id: string, error: unknown): string {
    const state = this.machines.map((m) => `${m.name} (${m.state === "created" ? "not started" : m.state})`).join(", ") || "none";
    const why = kind === "failure" ? `failed: ${error instanceof Error ? error.message : String(error)}` : "stopped at debug.breakpoint()";
    return [
      `haltpoint breakpoint ${id}: ${this.testName} ${why}`,
      `machines: ${state}`,
      `in scope: ${[...this.machines.map((m) => m.name), ...CONSOLE_NAMES.map((n) => (n === "machines" || n === "error" ? n : `${n}()`))].join(", ")}`,
      `commands need a running machine: await thaw() first, then e.g. await ${this.machines[0]?.name ?? "machine"}.succeed("dmesg | tail")`,
      ...(this.socketDir ? [`ssh: ${haltpointCommand()} ssh ${id} ${this.machines[0]?.name ?? "MACHINE"} (from another terminal; it thaws the machine unless the run has --ssh-thaws=false)`] : []),
      `release() ends the breakpoint${kind === "failure" ? " (the test then fails and tears down)" : " (the test goes on)"}; closing this connection does not`,
      "",
    ].join("\r\n");
  }
}
