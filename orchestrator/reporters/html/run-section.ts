// One run in the page: its outcome, every attempt with its error and stack, where it
// halted, and what it left in its log dir (log lines, consoles, screenshots, files).
import type { JsonAttempt, JsonRun, JsonTest } from "../json-report.ts";
import { seconds } from "../format.ts";
import { attemptArtifacts, type AttemptArtifacts, type ImageBudget, type LogTail } from "./artifacts.ts";
import { html, relativeUrl, type Html } from "./html-template.ts";
import { runAnchor } from "./timeline-svg.ts";

const BADGE: Record<string, string> = { passed: "PASS", failed: "FAIL", flaky: "FLAKY", "not-run": "NOT RUN" };

function kib(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function link(href: string, text: string): Html {
  return html`<a href="${relativeUrl(href)}">${text}</a>`;
}

function tailNote(t: LogTail): Html {
  return t.truncated ? html`<p class="muted">last ${t.lines.length} lines of ${kib(t.bytes)}; the whole file: ${link(t.href, t.href)}</p>` : html`<p class="muted">${link(t.href, t.href)}</p>`;
}

function renderArtifacts(a: AttemptArtifacts, full: boolean, open: boolean): Html {
  if (!a.found) return html``;
  if (!full) {
    const links = [a.runLog ? link(a.runLog.href, "run log") : null, ...a.consoles.map((c) => link(c.href, `${c.machine} console`)), ...a.files.map((f) => link(f.href, f.name))].filter(Boolean);
    return links.length ? html`<p class="meta">logs: ${links.map((l, i) => html`${i ? ", " : ""}${l}`)}</p>` : html``;
  }
  const shots = a.screenshots.map(
    (s) => html`<figure class="screenshot"><img src="${s.src.startsWith("data:") ? s.src : relativeUrl(s.src)}" alt="screenshot ${s.name}"><figcaption>${link(s.href, s.name)} (${kib(s.bytes)})</figcaption></figure>`,
  );
  const files = a.files.length
    ? html`<p class="meta">files: ${a.files.map((f, i) => html`${i ? ", " : ""}${link(f.href, f.name)} (${kib(f.bytes)})`)}${a.moreFiles ? ` and ${a.moreFiles} more` : ""}</p>`
    : html``;
  const runLog = a.runLog
    ? html`<details class="runlog"${open ? html` open` : ""}><summary>log lines (${a.runLog.truncated ? `last ${a.runLog.entries.length}` : a.runLog.entries.length})</summary>
<table class="runlog"><tbody>${a.runLog.entries.map((e) => html`<tr class="${e.level}"><td>${e.time?.slice(11, 23) ?? ""}</td><td>${e.level}</td><td>${e.machine ?? ""}</td><td>${e.msg}</td></tr>`)}</tbody></table>${tailNote(a.runLog)}</details>`
    : html``;
  const consoles = a.consoles.map(
    (c) => html`<details class="console" data-machine="${c.machine}"><summary>console of ${c.machine} (${kib(c.bytes)}${c.truncated ? `, last ${c.lines.length} lines` : ""})</summary><pre>${c.lines.join("\n")}</pre>${tailNote(c)}</details>`,
  );
  return html`${shots.length ? html`<div class="screenshots">${shots}</div>` : ""}${files}${runLog}${consoles}`;
}

function haltLines(a: JsonAttempt): Html {
  return html`${(a.halts ?? []).map(
    (h) => html`<p class="halt">halted at breakpoint ${h.id} (${h.kind === "failure" ? "on the failure" : "debug.breakpoint()"}) at ${h.startedAt.slice(11, 19)} for ${seconds(h.durationMs)}${h.by ? `; released by ${h.by}` : ""}</p>`,
  )}`;
}

async function renderAttempt(a: JsonAttempt, r: JsonRun, pageDir: string, full: boolean, images: ImageBudget): Promise<Html> {
  const art = await attemptArtifacts(a.logDir, pageDir, full, images);
  const failed = a.outcome === "failed";
  const error = a.error ? html`<pre class="error">${a.error.stack?.includes(a.error.message) ? a.error.stack : [a.error.message, a.error.stack].filter(Boolean).join("\n")}</pre>` : "";
  const reason = a.reason ? html`<p class="error-reason"><strong>${a.reason}</strong></p>` : "";
  // A merged report whose shard's log dir is not here still has the failed attempt's last lines.
  const saved = !art.found && a.log?.length ? html`<details${failed ? html` open` : ""}><summary>output (last ${a.log.length} lines, from the report)</summary><pre>${a.log.join("\n")}</pre></details>` : "";
  const head = r.attempts.length > 1 ? html`<h4><span class="badge ${a.outcome}">${BADGE[a.outcome]}</span>attempt ${a.attempt}</h4>` : "";
  const meta = html`<p class="meta">started ${a.startedAt.replace("T", " ").slice(0, 23)}, ${seconds(a.durationMs)}${a.slot !== undefined ? `, slot ${a.slot + 1}` : ""}</p>`;
  return html`<div class="attempt ${a.outcome}" data-attempt="${a.attempt}">${head}${meta}${reason}${error}${haltLines(a)}${renderArtifacts(art, full, failed)}${saved}</div>`;
}


export interface RunSectionOptions {
  pageDir: string;
  /** Show tails and images (failed and flaky runs, up to a page-wide limit). */
  full: boolean;
  images: ImageBudget;
  order: number;
}

export async function runSection(t: JsonTest, r: JsonRun, o: RunSectionOptions): Promise<Html> {
  const attempts: Html[] = [];
  for (const a of r.attempts) attempts.push(await renderAttempt(a, r, o.pageDir, o.full, o.images));
  const msg = r.outcome !== "passed" ? (r.reason ?? r.error ?? "") : "";
  return html`<section class="run ${r.outcome}" id="${runAnchor(r.key)}" data-outcome="${r.outcome}" data-name="${t.name}" data-key="${r.key}" data-order="${o.order}">
<h3><span class="badge ${r.outcome}">${BADGE[r.outcome]}</span>${r.key} <span class="meta">${seconds(r.durationMs)}${r.attempts.length > 1 ? `, ${r.attempts.length} attempts` : ""} · ${t.file}</span></h3>
${msg ? html`<p class="message">${msg}</p>` : ""}${attempts}</section>`;
}

export function notRunSection(t: JsonTest, run: number, order: number): Html {
  const key = `${t.name}#${run}`;
  return html`<section class="run not-run" id="${runAnchor(key)}" data-outcome="not-run" data-name="${t.name}" data-key="${key}" data-order="${order}"><h3><span class="badge not-run">NOT RUN</span>${key} <span class="meta">${t.file}</span></h3></section>`;
}
