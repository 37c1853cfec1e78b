// `npm run lint`'s folder rules (tools/import-rules.ts): every relative import of a checked
// file must be one its folder may make. Prints one line per forbidden import, naming the
// file, the line, what it imports and the rule; exits 1 if there is any.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { posix } from "node:path";
import { pathToFileURL } from "node:url";
import { CHECKED, type FolderRule, IMPORT_RULES } from "./import-rules.ts";

export interface ForbiddenImport {
  file: string;
  line: number;
  target: string;
  rule: FolderRule;
}

const SOURCE = /\.(ts|mts|mjs|js)$/;
// import … from "x" / export … from "x" / import "x" / import("x"), with `type` noted.
const IMPORT = /^\s*(import|export)(\s+type\b)?[^"'`;]*?\sfrom\s*["']([^"']+)["']|^\s*import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm;

function walk(root: string, rel: string, out: string[]): void {
  const full = posix.join(root, rel);
  if (statSync(full).isFile()) {
    if (SOURCE.test(rel) && !rel.endsWith(".d.ts")) out.push(rel);
    return;
  }
  for (const e of readdirSync(full)) if (e !== "node_modules") walk(root, posix.join(rel, e), out);
}

const under = (path: string, prefix: string): boolean => (prefix.endsWith("/") ? path.startsWith(prefix) : path === prefix);

function ruleFor(file: string, rules: FolderRule[]): FolderRule | undefined {
  return rules.filter((r) => under(file, r.from)).sort((a, b) => b.from.length - a.from.length)[0];
}

/** Every forbidden import under `root` (a repository checkout). */
export function forbiddenImports(root: string, rules: FolderRule[] = IMPORT_RULES, checked: string[] = CHECKED): ForbiddenImport[] {
  const files: string[] = [];
  for (const c of checked) {
    try {
      walk(root, c.replace(/\/$/, ""), files);
    } catch {
      /* a folder this checkout does not have */
    }
  }
  const bad: ForbiddenImport[] = [];
  for (const file of files) {
    const rule = ruleFor(file, rules);
    if (!rule) continue;
    const src = readFileSync(posix.join(root, file), "utf8");
    for (const m of src.matchAll(IMPORT)) {
      const spec = m[3] ?? m[4] ?? m[5]!;
      if (!spec.startsWith(".")) continue; // a package or node: builtin
      const target = posix.normalize(posix.join(posix.dirname(file), spec));
      const typeOnly = m[2] !== undefined;
      const ok = rule.may.some((p) => under(target, p)) || (typeOnly && (rule.mayType ?? []).some((p) => under(target, p)));
      if (!ok) bad.push({ file, line: src.slice(0, m.index).split("\n").length, target, rule });
    }
  }
  return bad;
}

export function describeForbidden(b: ForbiddenImport): string {
  const may = [...b.rule.may, ...(b.rule.mayType ?? []).map((p) => `${p} (types only)`)];
  return `${b.file}:${b.line}: imports ${b.target}, but ${b.rule.from} may import only ${may.join(", ") || "nothing of this repository"}: ${b.rule.why} (tools/import-rules.ts)`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const root = process.argv[2] ?? ".";
  const bad = forbiddenImports(root);
  for (const b of bad) process.stderr.write(`${describeForbidden(b)}\n`);
  if (bad.length) process.stderr.write(`check-imports: ${bad.length} forbidden import${bad.length === 1 ? "" : "s"}\n`);
  process.exitCode = bad.length ? 1 : 0;
}
