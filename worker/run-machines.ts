import { mkdirSync, rmSync } from "node:fs";
import { createMachine } from "../vm/create-machine.ts";
import type { BaseMachine } from "../vm/machine.ts";
import type { RunNetwork } from "../vm/qemu/run-network.ts";
import type { QemuRuntime } from "../vm/qemu/qemu-runtime.ts";
import type { SshBackdoor } from "../hooks/ssh/ssh-backdoor.ts";
import type { ResolvedNode } from "../vm/node-options.ts";
import type { RunContext } from "./run-context.ts";
import { bestEffort, type TeardownLog } from "../common/teardown.ts";

/** One run's machines and what they share: the state directory, the virtual network, the SSH backdoor. */
export interface RunMachines {
  ctx: RunContext;
  /** In the test's node order; machines the script creates are appended (driver-api.ts). */
  machines: BaseMachine[];
  network?: RunNetwork;
  backdoor?: SshBackdoor;
}

export interface MakeMachinesOptions {
  qemu?: QemuRuntime;
  /** Open SSH backdoor sockets (before the machines start: a guest's vsock device is chosen then). */
  backdoor?: { thaws: boolean };
}

/**
 * Make a test's machines (not started) in `run.ctx.dir`: its virtual network when it has qemu
 * nodes, a machine per node, the SSH backdoor's sockets. Fills `run` as it goes, so that a
 * failure halfway leaves what was made for tearDownMachines.
 */
export async function makeMachines(run: RunMachines, test: { nodes: ResolvedNode[] }, o: MakeMachinesOptions): Promise<void> {
  if (test.nodes.length) mkdirSync(run.ctx.dir, { recursive: true });
  if (test.nodes.some((n) => n.backend === "qemu")) {
    const { RunNetwork } = await import("../vm/qemu/run-network.ts");
    run.network = new RunNetwork(run.ctx.dir, test.nodes);
  }
  for (const node of test.nodes) run.machines.push(await createMachine(node, run.ctx, { qemu: o.qemu, network: run.network }));
  if (run.machines.length && o.backdoor) {
    const { SshBackdoor } = await import("../hooks/ssh/ssh-backdoor.ts");
    run.backdoor = await SshBackdoor.open(run.machines, { dir: run.ctx.dir, thaws: o.backdoor.thaws, log: (m, msg) => run.ctx.log(m, msg) });
  }
}

/**
 * Tear a run's machines down, best effort: the backdoor, every machine, the network, the state
 * directory. Each failure is one `warn` line; none stops the rest.
 */
export async function tearDownMachines(run: RunMachines, warn: TeardownLog): Promise<void> {
  if (run.backdoor) await bestEffort(warn, "closing the ssh backdoor", run.backdoor.close());
  await Promise.all(run.machines.map((m) => m.cleanup()));
  if (run.network) await bestEffort(warn, "closing the virtual network", run.network.close());
  // Left behind, the main thread's sweep of abandoned state roots removes it later.
  if (run.machines.length) await bestEffort(warn, `removing the state directory ${run.ctx.dir}`, () => rmSync(run.ctx.dir, { recursive: true, force: true }));
}
