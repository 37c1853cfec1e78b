import type { BreakpointBroker } from "../../hooks/breakpoints/breakpoint-broker.ts";
import type { ControlReply, ControlRequest } from "../../hooks/control/control-protocol.ts";
import type { PlannedRun } from "../selection/plan.ts";

/** A running suite's answer to `haltpoint ls / release / save` (its control socket, hooks/control/). */
export async function handleControl(broker: BreakpointBroker<PlannedRun>, req: ControlRequest): Promise<ControlReply> {
  switch (req.cmd) {
    case "ls":
      return { ok: true, breakpoints: broker.list() };
    case "release":
      return broker.release(req.id, "haltpoint release")
        ? { ok: true, released: [req.id] }
        : { ok: false, error: `no breakpoint ${req.id} in this run` };
    case "release-all":
      return { ok: true, released: broker.releaseAll("haltpoint release --all") };
    case "save": {
      const e = await broker.save(req.id, req.dir);
      if (e.error !== undefined) return { ok: false, error: `breakpoint ${req.id}: ${e.error}` };
      return { ok: true, bundle: { dir: e.dir, bytes: e.bytes ?? 0, ms: e.ms ?? 0, skipped: e.skipped ?? [], ...(e.imageBytes ? { imageBytes: e.imageBytes } : {}) } };
    }
  }
}
