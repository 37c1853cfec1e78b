// The page's own stylesheet and script (inline: the page works offline, as one file).
// The script only enhances: without it every run is listed, failures first.

export const PAGE_CSS = `
:root { --pass: #1a7f37; --fail: #cf222e; --flaky: #9a6700; --halt: #8250df; --muted: #57606a; --line: #d0d7de; font-family: system-ui, sans-serif; }
body { margin: 0 auto; max-width: 1280px; padding: 1rem 1.5rem 4rem; color: #1f2328; line-height: 1.4; }
h1 { font-size: 1.5rem; margin: 0.2rem 0; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid var(--line); } h3 { font-size: 1rem; margin: 0; }
table { border-collapse: collapse; font-size: 0.9rem; } th, td { text-align: left; padding: 0.2rem 0.6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-size: 1.1rem; } .status.ok { color: var(--pass); } .status.bad { color: var(--fail); }
.badge { display: inline-block; min-width: 3.5em; text-align: center; border-radius: 3px; padding: 0 0.3em; color: #fff; font-weight: 600; font-size: 0.8rem; margin-right: 0.4em; }
.badge.passed { background: var(--pass); } .badge.failed { background: var(--fail); } .badge.flaky { background: var(--flaky); } .badge.not-run { background: var(--muted); }
pre { background: #f6f8fa; padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; white-space: pre-wrap; word-break: break-all; margin: 0.3rem 0; }
pre.error { background: #ffebe9; }
section.run { border: 1px solid var(--line); border-left: 4px solid var(--pass); border-radius: 4px; margin: 0.5rem 0; padding: 0.4rem 0.8rem; }
section.run.failed { border-left-color: var(--fail); } section.run.flaky { border-left-color: var(--flaky); } section.run.not-run { border-left-color: var(--muted); }
.attempt { margin: 0.4rem 0 0.4rem 0.5rem; } .meta, .muted { color: var(--muted); font-size: 0.85rem; }
.halt { color: var(--halt); } figure { display: inline-block; margin: 0.3rem 0.6rem 0.3rem 0; } figure img { max-width: 480px; border: 1px solid var(--line); display: block; }
table.runlog td { font-family: ui-monospace, monospace; font-size: 0.78rem; padding: 0 0.4rem; } tr.error td, tr.fatal td { color: var(--fail); } tr.warn td { color: var(--flaky); }
#filters { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; padding: 0.5rem; background: #f6f8fa; border-radius: 4px; position: sticky; top: 0; z-index: 1; }
#filters[hidden] { display: none; } [hidden] { display: none !important; }
svg text { font-size: 11px; fill: #1f2328; } svg text.tick { text-anchor: middle; fill: var(--muted); } svg line.tick { stroke: #eaeef2; } svg line.lane { stroke: #eaeef2; }
svg text.block { font-weight: 600; } svg text.off { fill: var(--halt); }
svg rect.passed { fill: var(--pass); } svg rect.failed { fill: var(--fail); } svg rect.halted { fill: url(#hatch); }
svg .halted-bg { fill: #e9dffb; } svg .halted-stripe { stroke: var(--halt); stroke-width: 3; }
svg g.bar:hover rect { opacity: 0.7; }
svg line.ci, svg line.ci-end { stroke: var(--fail); stroke-width: 2; } svg circle.rate { fill: var(--fail); } svg text.value { fill: var(--muted); }
.legend span { margin-right: 1rem; } .legend i { display: inline-block; width: 1em; height: 0.8em; margin-right: 0.3em; vertical-align: middle; }
.timeline-wrap { overflow-x: auto; }
`;

/** Filters: by outcome, by name, failures first. Runs carry data-outcome, data-name, data-order. */
export const PAGE_JS = `
(function () {
  var form = document.getElementById("filters");
  var list = document.getElementById("runs");
  if (!form || !list) return;
  var runs = Array.prototype.slice.call(list.querySelectorAll("section.run"));
  var count = document.getElementById("shown");
  var rank = { failed: 0, flaky: 1 };
  function apply() {
    var outcome = form.querySelector("input[name=outcome]:checked").value;
    var q = form.elements.q.value.trim().toLowerCase();
    var first = form.elements.first.checked;
    var shown = 0;
    runs.forEach(function (s) {
      var show = (outcome === "all" || s.dataset.outcome === outcome) && (!q || s.dataset.name.toLowerCase().indexOf(q) >= 0 || s.dataset.key.toLowerCase().indexOf(q) >= 0);
      s.hidden = !show;
      if (show) shown++;
    });
    runs.slice().sort(function (a, b) {
      var ra = first && a.dataset.outcome in rank ? rank[a.dataset.outcome] : 2;
      var rb = first && b.dataset.outcome in rank ? rank[b.dataset.outcome] : 2;
      return ra - rb || a.dataset.order - b.dataset.order;
    }).forEach(function (s) { list.appendChild(s); });
    count.textContent = "showing " + shown + " of " + runs.length + " runs";
  }
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  form.hidden = false;
  apply();
})();
`;
