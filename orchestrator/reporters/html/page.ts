// The HTML report: one page, offline (styles, script and small screenshots inline; links
// relative to the page, so the log dir and the page upload as one CI artifact).
import { createHash } from "node:crypto";
import { dirname, relative, resolve, sep } from "node:path";
import type { JsonReport, JsonRun, JsonTest } from "../json-report.ts";
import type { HostFacts } from "../../../vm/host-facts.ts";
import { percent, seconds } from "../format.ts";
import { ImageBudget } from "./artifacts.ts";
import { failureGroups, flakeChartSvg, repeatedTests } from "./flake-chart-svg.ts";
import { html, relativeUrl, trusted, type Html } from "./html-template.ts";
import { PAGE_CSS, PAGE_JS } from "./page-assets.ts";
import { notRunSection, runSection } from "./run-section.ts";
import { runAnchor, timelineSvg, type TimelineSource } from "./timeline-svg.ts";

/** Failed and flaky runs shown in full (tails, screenshots); past this, links only. */
const MAX_FULL_RUNS = 300;

export interface HtmlReportInput {
  /** The report's data: the run's, or the merged one. */
  report: JsonReport;
  /** Where the runs came from: one for a run, one per report for a merge (timeline lanes, hosts). */
  sources: TimelineSource[];
  /** The page's own path: links are relative to its directory. */
  pageFile: string;
  /** "haltpoint run" or "haltpoint merge of N reports". */
  what: string;
}

const sha256 = (s: string): string => createHash("sha256").update(s).digest("base64");

function hostRow(label: string, h: HostFacts | undefined): Html {
  if (!h) return html`<tr><td>${label}</td><td colspan="6" class="muted">not recorded</td></tr>`;
  return html`<tr><td>${label}</td><td>${h.hostname}</td><td>${h.haltpoint}</td><td>${h.qemu ?? "not installed"}</td><td>${h.node}</td><td>${h.os}</td><td>${h.cpus} cores, ${(h.memoryMiB / 1024).toFixed(1)} GiB</td></tr>`;
}

function testsTable(tests: JsonTest[]): Html {
  const count = (t: JsonTest, o: string) => t.runs.filter((r) => r.outcome === o).length;
  return html`<table class="tests"><thead><tr><th>test</th><th>file</th><th>runs</th><th>passed</th><th>failed</th><th>flaky</th><th>not run</th><th>failure rate (95% CI)</th></tr></thead><tbody>${tests.map((t) => {
    const first = t.runs.find((r) => r.outcome !== "passed") ?? t.runs[0];
    const name = first ? html`<a href="#${runAnchor(first.key)}">${t.name}</a>` : t.name;
    const rate = t.stats.attempts > 1 ? `${percent(t.stats.failureRate)} (${percent(t.stats.wilson95.low)}–${percent(t.stats.wilson95.high)})` : "";
    return html`<tr class="test" data-test="${t.name}"><td>${name}</td><td>${t.file}</td><td class="num">${t.runs.length}</td><td class="num">${count(t, "passed")}</td><td class="num">${count(t, "failed")}</td><td class="num">${count(t, "flaky")}</td><td class="num">${t.notRun.length}</td><td>${rate}</td></tr>`;
  })}</tbody></table>`;
}

export async function renderHtmlReport(input: HtmlReportInput): Promise<string> {
  const { report } = input;
  const pageDir = dirname(resolve(input.pageFile));
  const s = report.summary;
  const ok = report.exitStatus === 0;
  const headline = `${s.passed} passed, ${s.failed} failed, ${s.flaky} flaky, ${s.notRun} not run, ${s.loadErrors} load error${s.loadErrors === 1 ? "" : "s"}`;
  const logDirs = report.logDir.split(", ").filter(Boolean);

  // Failures first without JS too (the script can switch to run order).
  const rank = (r: JsonRun) => (r.outcome === "failed" ? 0 : r.outcome === "flaky" ? 1 : 2);
  const entries: { t: JsonTest; r?: JsonRun; n: number; order: number }[] = report.tests
    .flatMap((t) => [...t.runs.map((r) => ({ t, r, n: r.run })), ...t.notRun.map((n) => ({ t, n }))])
    .map((e, order) => ({ ...e, order }));
  const sorted = [...entries].sort((a, b) => (a.r ? rank(a.r) : 3) - (b.r ? rank(b.r) : 3) || a.order - b.order);
  const images = new ImageBudget();
  let full = 0;
  // Log dirs are read concurrently (1,000 runs read one after another took most of a second).
  const sections = await Promise.all(
    sorted.map((e) => {
      if (!e.r) return notRunSection(e.t, e.n, e.order);
      const showFull = e.r.outcome !== "passed" && full++ < MAX_FULL_RUNS;
      return runSection(e.t, e.r, { pageDir, full: showFull, images, order: e.order });
    }),
  );

  const repeated = repeatedTests(report.tests);
  const flake = repeated.length
    ? html`<section id="flakiness"><h2>Flakiness</h2><p class="muted">Failure rate = failed attempts / attempts, with its 95% Wilson interval, for each test run more than once.</p>${flakeChartSvg(repeated)}${failureGroups(repeated)}</section>`
    : html``;
  const hosts = input.sources.length === 1 ? hostRow("", input.sources[0]!.report.host) : input.sources.map((src) => hostRow(src.label, src.report.host));
  const facts: [string, Html | string][] = [
    ["exit status", String(report.exitStatus)],
    ["started", report.startedAt.replace("T", " ").replace("Z", " UTC")],
    ["duration", seconds(report.durationMs)],
    ["jobs", String(report.jobs)],
    ...(report.retries !== null ? ([["retries", String(report.retries)]] as [string, string][]) : []),
    ...(report.shard ? ([["shard", `${report.shard.index}/${report.shard.total}`]] as [string, string][]) : []),
    ...(report.interrupted ? ([["interrupted", "yes (Ctrl-C): runs not started are listed as not run"]] as [string, string][]) : []),
    ["log dir", html`${logDirs.map((d, i) => html`${i ? ", " : ""}<a href="${relativeUrl(relative(pageDir, d).split(sep).join("/") || ".")}">${d}</a>`)}`],
  ];
  const loadErrors = report.loadErrors.length
    ? html`<h2>Load errors</h2><ul class="load-errors">${report.loadErrors.map((e) => html`<li><code>${e.file}</code>: <pre class="error">${e.error}</pre></li>`)}</ul>`
    : html``;
  const runCount = entries.length;
  const css = PAGE_CSS;
  const js = PAGE_JS;
  // No request leaves the page: a strict policy, with the page's own style and script by hash.
  const csp = `default-src 'none'; img-src data: 'self' file:; style-src 'sha256-${sha256(css)}'; script-src 'sha256-${sha256(js)}'; base-uri 'none'; form-action 'none'`;
  const page = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<title>${ok ? "PASS" : "FAIL"} · haltpoint · ${headline}</title>
<style>${trusted(css)}</style></head>
<body>
<header><h1>haltpoint report</h1><p class="muted">${input.what}</p>
<p class="status ${ok ? "ok" : "bad"}" id="summary">${headline} in ${seconds(report.durationMs)} — exit status ${report.exitStatus}</p></header>
<table class="facts"><tbody>${facts.map(([k, v]) => html`<tr><th>${k}</th><td>${v}</td></tr>`)}</tbody></table>
<h2>Host</h2><table class="hosts"><thead><tr><th></th><th>host</th><th>haltpoint</th><th>QEMU</th><th>Node</th><th>OS</th><th>resources</th></tr></thead><tbody>${hosts}</tbody></table>
${loadErrors}
<h2>Tests</h2>${testsTable(report.tests)}
<section id="timeline"><h2>Timeline</h2><p class="legend muted"><span>time from the first run's start; each bar is one run in the job slot that ran it; red: a failed attempt, green: passed, hatched: halted at a breakpoint (its slot given back)</span></p>
<div class="timeline-wrap">${timelineSvg(input.sources)}</div></section>
${flake}
<h2>Runs</h2>
<form id="filters" hidden><span>outcome:
${["all", "failed", "flaky", "passed", "not-run"].map((o) => html`<label><input type="radio" name="outcome" value="${o}"${o === "all" ? html` checked` : ""}> ${o.replace("-", " ")}</label> `)}</span>
<label>name <input type="search" name="q" placeholder="test name"></label>
<label><input type="checkbox" name="first" checked> failures first</label>
<span id="shown" class="muted"></span></form>
<div id="runs">${runCount ? sections : html`<p class="empty">No runs.</p>`}</div>
<script>${trusted(js)}</script>
</body></html>
`;
  return page.text;
}
