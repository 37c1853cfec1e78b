// What a run wrote in its log dir, gathered for the HTML report at the end of the run:
// its pino log lines, each machine's console, its screenshots and copied files. Reading
// these is embedding artifacts into the page; every fact the page states about the run
// (outcome, timing, errors) comes from the report's data, not from these files.
import { open, readdir, readFile, stat } from "node:fs/promises";
import { basename, join, relative, sep } from "node:path";

/** Lines of a console or run log shown in the page; the rest is behind the file's link. */
export const TAIL_LINES = 200;
/** Bytes read from the end of a log for its tail. */
const TAIL_BYTES = 128 * 1024;
/** A screenshot up to this size is inlined as a data: URI, a larger one is linked. */
const INLINE_IMAGE_BYTES = 1024 * 1024;
/** Files listed per attempt's out/ (a test may copy thousands). */
const MAX_FILES = 200;

export interface LogTail {
  href: string;
  bytes: number;
  /** The last lines (at most TAIL_LINES). */
  lines: string[];
  /** Lines were left out: the page says so and links the whole file. */
  truncated: boolean;
}

export interface RunLogLine {
  time?: string;
  level: string;
  machine?: string;
  msg: string;
}

export interface AttemptArtifacts {
  /** The log dir is there (a merged report's shards may have run elsewhere). */
  found: boolean;
  runLog?: LogTail & { entries: RunLogLine[] };
  consoles: (LogTail & { machine: string })[];
  screenshots: { name: string; href: string; bytes: number; src: string }[];
  files: { name: string; href: string; bytes: number }[];
  /** More files in out/ than listed. */
  moreFiles: number;
}

/** Inlined image bytes, over the whole page (a report with 500 screenshots still loads). */
export class ImageBudget {
  constructor(public left = 16 * 1024 * 1024) {}
}

const LEVELS: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };

function href(pageDir: string, file: string): string {
  return relative(pageDir, file).split(sep).join("/");
}

async function tail(file: string, pageDir: string): Promise<LogTail | undefined> {
  let fh;
  try {
    fh = await open(file, "r");
    const { size } = await fh.stat();
    const start = Math.max(0, size - TAIL_BYTES);
    const buf = Buffer.alloc(size - start);
    await fh.read(buf, 0, buf.length, start);
    let lines = buf.toString("utf8").split("\n");
    if (lines.at(-1) === "") lines.pop();
    let truncated = start > 0;
    if (start > 0) lines.shift(); // a partial line
    if (lines.length > TAIL_LINES) {
      lines = lines.slice(-TAIL_LINES);
      truncated = true;
    }
    return { href: href(pageDir, file), bytes: size, lines, truncated };
  } catch {
    return undefined;
  } finally {
    await fh?.close();
  }
}

/** A passing run's log: linked, not read (its size is not shown). */
function linkOnly(file: string, pageDir: string): LogTail {
  return { href: href(pageDir, file), bytes: 0, lines: [], truncated: true };
}

function parseRunLogLine(line: string): RunLogLine {
  try {
    const j = JSON.parse(line) as { time?: string; level?: number; machine?: string; msg?: string; event?: string; err?: { message?: string } };
    const msg = [j.msg ?? (j.event ? `(${j.event})` : ""), j.err?.message && !j.msg?.includes(j.err.message) ? j.err.message : ""].filter(Boolean).join(": ");
    return { time: j.time, level: LEVELS[j.level ?? 30] ?? String(j.level), machine: j.machine, msg };
  } catch {
    return { level: "?", msg: line };
  }
}

/**
 * An attempt's artifacts. `full` (failed and flaky runs): tails and images too; otherwise
 * only links, so that a report of 1,000 passing runs stays small.
 */
export async function attemptArtifacts(logDir: string, pageDir: string, full: boolean, images: ImageBudget): Promise<AttemptArtifacts> {
  const a: AttemptArtifacts = { found: false, consoles: [], screenshots: [], files: [], moreFiles: 0 };
  let names: string[];
  try {
    names = (await readdir(logDir)).sort();
  } catch {
    return a;
  }
  a.found = true;
  if (names.includes("run.jsonl")) {
    const file = join(logDir, "run.jsonl");
    const t = full ? await tail(file, pageDir) : linkOnly(file, pageDir);
    if (t) a.runLog = { ...t, entries: t.lines.map(parseRunLogLine) };
  }
  for (const n of names.filter((n) => n.endsWith(".console.log"))) {
    const file = join(logDir, n);
    const machine = n.slice(0, -".console.log".length);
    const t = full ? await tail(file, pageDir) : linkOnly(file, pageDir);
    if (t) a.consoles.push({ ...t, machine });
  }
  if (names.includes("out")) {
    const outDir = join(logDir, "out");
    const files = (await readdir(outDir, { recursive: true, withFileTypes: true }).catch(() => []))
      .filter((d) => d.isFile())
      .map((d) => join(d.parentPath ?? (d as unknown as { path: string }).path, d.name))
      .sort();
    for (const file of files) {
      const bytes = full ? ((await stat(file).catch(() => undefined))?.size ?? 0) : 0;
      const link = href(pageDir, file);
      const name = relative(outDir, file).split(sep).join("/");
      if (file.endsWith(".png") && full) {
        let src = link;
        if (bytes <= INLINE_IMAGE_BYTES && bytes <= images.left) {
          const data = await readFile(file).catch(() => undefined);
          if (data && isPng(data)) {
            images.left -= bytes;
            src = `data:image/png;base64,${data.toString("base64")}`;
          }
        }
        a.screenshots.push({ name: basename(file), href: link, bytes, src });
      } else if (a.files.length < MAX_FILES) a.files.push({ name, href: link, bytes });
      else a.moreFiles++;
    }
  }
  return a;
}

function isPng(b: Buffer): boolean {
  return b.length > 8 && b.readUInt32BE(0) === 0x89504e47;
}
