// For tests with more than one attempt: the failure rate with its 95% Wilson interval as
// a dot on a whisker (SVG), and the test's failures grouped by signature.
import type { JsonTest } from "../json-report.ts";
import { percent } from "../format.ts";
import { html, type Html } from "./html-template.ts";
import { runAnchor } from "./timeline-svg.ts";

const LABEL_W = 220;
const PLOT_W = 560;
const ROW_H = 22;
const TOP = 20;
/** Runs linked per failure group. */
const MAX_RUNS_LINKED = 20;

export function repeatedTests(tests: JsonTest[]): JsonTest[] {
  return tests.filter((t) => t.stats.attempts > 1);
}

export function flakeChartSvg(tests: JsonTest[]): Html {
  const x = (p: number): number => LABEL_W + p * PLOT_W;
  const axis = [0, 0.25, 0.5, 0.75, 1].map(
    (p) => html`<line class="tick" x1="${x(p)}" x2="${x(p)}" y1="${TOP - 4}" y2="${TOP + tests.length * ROW_H}"/><text class="tick" x="${x(p)}" y="${TOP - 8}">${p * 100}%</text>`,
  );
  const rows = tests.map((t, i) => {
    const s = t.stats;
    const y = TOP + i * ROW_H + ROW_H / 2;
    const label = `${percent(s.failureRate)} (95% CI ${percent(s.wilson95.low)}–${percent(s.wilson95.high)}), ${s.failures}/${s.attempts} attempts failed`;
    return html`<g class="flake-row" data-test="${t.name}"><title>${t.name}: ${label}</title>
<text class="name" x="4" y="${y + 4}">${t.name}</text>
<line class="ci" x1="${x(s.wilson95.low).toFixed(1)}" x2="${x(s.wilson95.high).toFixed(1)}" y1="${y}" y2="${y}"/>
<line class="ci-end" x1="${x(s.wilson95.low).toFixed(1)}" x2="${x(s.wilson95.low).toFixed(1)}" y1="${y - 5}" y2="${y + 5}"/>
<line class="ci-end" x1="${x(s.wilson95.high).toFixed(1)}" x2="${x(s.wilson95.high).toFixed(1)}" y1="${y - 5}" y2="${y + 5}"/>
<circle class="rate" cx="${x(s.failureRate).toFixed(1)}" cy="${y}" r="4.5"/>
<text class="value" x="${LABEL_W + PLOT_W + 10}" y="${y + 4}">${label}</text></g>`;
  });
  const height = TOP + tests.length * ROW_H + 8;
  const width = LABEL_W + PLOT_W + 330;
  return html`<svg class="flake-chart" role="img" aria-label="failure rate with its 95% Wilson interval per repeated test" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">${axis}${rows}</svg>`;
}

/** Each repeated test's failure groups: count, normalised signature, example message, runs. */
export function failureGroups(tests: JsonTest[]): Html {
  const withGroups = tests.filter((t) => t.stats.groups.length);
  if (!withGroups.length) return html``;
  return html`<table class="groups"><thead><tr><th>test</th><th>count</th><th>failure (numbers, paths, ids normalised)</th><th>runs</th></tr></thead><tbody>${withGroups.flatMap((t) =>
    t.stats.groups.map((g) => {
      const runs = g.occurrences.slice(0, MAX_RUNS_LINKED).map((o) => html` <a href="#${runAnchor(`${t.name}#${o.run}`)}">${o.attempt > 1 ? `${o.run} (attempt ${o.attempt})` : o.run}</a>`);
      const more = g.occurrences.length > MAX_RUNS_LINKED ? ` … ${g.occurrences.length - MAX_RUNS_LINKED} more` : "";
      return html`<tr><td>${t.name}</td><td class="num">${g.count}×</td><td><code>${g.signature}</code><div class="example">e.g. ${g.example}</div></td><td>${runs}${more}</td></tr>`;
    }),
  )}</tbody></table>`;
}
