// The timeline: every run as one bar across the --jobs slots that ran it, as inline SVG.
// A run holds its slot until it ends or halts; from its first halt on (the slot given
// back) it is drawn in the lanes below the slots, its halted time hatched.
import type { JsonAttempt, JsonReport } from "../json-report.ts";
import { html, type Html } from "./html-template.ts";
import { seconds } from "../format.ts";

export interface TimelineSource {
  /** "" for a single run; a shard or file for a merged report. */
  label: string;
  report: JsonReport;
}

const LABEL_W = 150;
const PLOT_W = 900;
const LANE_H = 16;
const LANE_GAP = 4;
const TOP = 22;

interface Segment {
  from: number;
  to: number;
  kind: "passed" | "failed" | "halted";
}

interface Bar {
  key: string;
  outcome: string;
  title: string;
  /** Per lane index (within the source's lanes), the segments drawn there. */
  parts: { lane: number; segs: Segment[] }[];
}

interface Lane {
  label: string;
  /** Greedy packing of attempts that carry no slot (older reports): when the lane is free. */
  freeAt: number;
}

const ms = (iso: string): number => Date.parse(iso);

function attemptSegments(a: JsonAttempt): { inSlot: Segment[]; offSlot: Segment[]; start: number; end: number } {
  const start = ms(a.startedAt);
  const end = start + Math.max(0, a.durationMs);
  const halts = (a.halts ?? []).map((h) => ({ from: ms(h.startedAt), to: ms(h.startedAt) + h.durationMs })).filter((h) => h.from >= start - 1000);
  if (!halts.length) return { inSlot: [{ from: start, to: end, kind: a.outcome }], offSlot: [], start, end };
  const first = halts[0]!.from;
  const offSlot: Segment[] = [];
  let t = first;
  for (const h of halts) {
    if (h.from > t) offSlot.push({ from: t, to: h.from, kind: a.outcome });
    offSlot.push({ from: h.from, to: h.to, kind: "halted" });
    t = h.to;
  }
  if (end > t) offSlot.push({ from: t, to: end, kind: a.outcome });
  return { inSlot: [{ from: start, to: first, kind: a.outcome }], offSlot, start, end: Math.max(end, t) };
}

function niceStep(spanMs: number): number {
  for (const s of [100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000]) {
    if (spanMs / s <= 8) return s;
  }
  return 7_200_000;
}

export function timelineSvg(sources: TimelineSource[]): Html {
  // Each report's time counts from its first run's start: shards run at once on many
  // machines (whose clocks differ), and merged runs made one after another stay readable.
  type Block = { label: string; lanes: Lane[]; off: Lane[]; bars: Bar[]; origin: number };
  const blocks: Block[] = [];
  let span = 1;
  for (const src of sources) {
    let t0 = Infinity;
    let t1 = -Infinity;
    const slots = Math.max(1, src.report.jobs || 1);
    const lanes: Lane[] = Array.from({ length: slots }, (_, i) => ({ label: `slot ${i + 1}`, freeAt: -Infinity }));
    const off: Lane[] = [];
    const bars: Bar[] = [];
    const runs = src.report.tests.flatMap((t) => t.runs).sort((a, b) => ms(a.startedAt) - ms(b.startedAt));
    for (const r of runs) {
      const attempts = r.attempts?.length ? r.attempts : [];
      const segs = attempts.map(attemptSegments);
      if (!segs.length) continue;
      const start = Math.min(...segs.map((s) => s.start));
      const end = Math.max(...segs.map((s) => s.end));
      t0 = Math.min(t0, start);
      t1 = Math.max(t1, end);
      // The slot the scheduler recorded; older reports: the first lane free at the run's start.
      let lane = attempts[0]!.slot;
      if (lane === undefined) {
        lane = lanes.findIndex((l) => l.freeAt <= start);
        if (lane < 0) lane = lanes.push({ label: `slot ${lanes.length + 1}`, freeAt: -Infinity }) - 1;
      }
      while (lane >= lanes.length) lanes.push({ label: `slot ${lanes.length + 1}`, freeAt: -Infinity });
      lanes[lane]!.freeAt = end;
      const parts: Bar["parts"] = [{ lane, segs: segs.flatMap((s) => s.inSlot) }];
      const offSegs = segs.flatMap((s) => s.offSlot);
      if (offSegs.length) {
        const from = offSegs[0]!.from;
        let o = off.findIndex((l) => l.freeAt <= from);
        if (o < 0) o = off.push({ label: "halted / after", freeAt: -Infinity }) - 1;
        off[o]!.freeAt = end;
        parts.push({ lane: -1 - o, segs: offSegs });
      }
      const halted = attempts.flatMap((a) => a.halts ?? []).reduce((s, h) => s + h.durationMs, 0);
      const title = `${r.key}: ${r.outcome}, ${seconds(r.durationMs)}` + (attempts.length > 1 ? `, ${attempts.length} attempts` : "") + (halted ? `, halted ${seconds(halted)}` : "");
      bars.push({ key: r.key, outcome: r.outcome, title, parts });
    }
    if (!bars.length) continue;
    blocks.push({ label: src.label, lanes, off, bars, origin: t0 });
    span = Math.max(span, t1 - t0);
  }
  if (!blocks.length) return html`<p class="empty">No run started.</p>`;
  let origin = 0;
  const x = (t: number): number => LABEL_W + ((t - origin) / span) * PLOT_W;
  const rows: Html[] = [];
  const bars: Html[] = [];
  let y = TOP;
  for (const b of blocks) {
    origin = b.origin;
    if (b.label) {
      rows.push(html`<text class="block" x="0" y="${y + 11}">${b.label}</text>`);
      y += LANE_H;
    }
    const laneY = new Map<number, number>();
    b.lanes.forEach((l, i) => {
      laneY.set(i, y);
      rows.push(html`<text class="lane" x="4" y="${y + 12}">${l.label}</text><line class="lane" x1="${LABEL_W}" x2="${LABEL_W + PLOT_W}" y1="${y + LANE_H}" y2="${y + LANE_H}"/>`);
      y += LANE_H + LANE_GAP;
    });
    b.off.forEach((l, i) => {
      laneY.set(-1 - i, y);
      rows.push(html`<text class="lane off" x="4" y="${y + 12}">${l.label}</text>`);
      y += LANE_H + LANE_GAP;
    });
    for (const bar of b.bars) {
      const rects = bar.parts.flatMap((p) =>
        p.segs.map((s) => {
          const w = Math.max(1.5, x(s.to) - x(s.from));
          return html`<rect class="${s.kind}" x="${x(s.from).toFixed(1)}" y="${laneY.get(p.lane)! + 1}" width="${w.toFixed(1)}" height="${LANE_H - 2}"/>`;
        }),
      );
      bars.push(html`<a href="#${runAnchor(bar.key)}"><g class="bar ${bar.outcome}" data-key="${bar.key}"><title>${bar.title}</title>${rects}</g></a>`);
    }
    y += LANE_GAP;
  }
  const step = niceStep(span);
  const ticks: Html[] = [];
  origin = 0;
  for (let t = 0; t <= span; t += step) {
    ticks.push(html`<line class="tick" x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${TOP - 4}" y2="${y}"/><text class="tick" x="${x(t).toFixed(1)}" y="${TOP - 8}">${tickLabel(t)}</text>`);
  }
  const height = y + 4;
  return html`<svg class="timeline" role="img" aria-label="timeline of every run across the job slots" viewBox="0 0 ${LABEL_W + PLOT_W + 10} ${height}" width="${LABEL_W + PLOT_W + 10}" height="${height}" xmlns="http://www.w3.org/2000/svg">
<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" class="halted-bg"/><line x1="0" y1="0" x2="0" y2="6" class="halted-stripe"/></pattern></defs>
${ticks}${rows}${bars}
</svg>`;
}

/** The id of a run's section in the page (keys hold `#`, which ids may, but URLs must escape). */
export function runAnchor(key: string): string {
  return `run-${encodeURIComponent(key)}`;
}

function tickLabel(t: number): string {
  if (t === 0) return "0";
  if (t < 60_000) return `${+(t / 1000).toFixed(1)} s`;
  return `${+(t / 60_000).toFixed(1)} min`;
}
