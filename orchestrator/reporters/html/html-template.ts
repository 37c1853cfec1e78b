import escapeHtml from "escape-html";

/**
 * HTML built by tagged templates: every interpolated value is escaped (escape-html: `& < > " '`,
 * so it is safe in text and in quoted attributes) unless it is itself `Html` made by this
 * tag. Nothing reaches the page unescaped by accident; arrays are joined, null/false vanish.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type HtmlValue = Html | string | number | boolean | null | undefined | HtmlValue[];

function render(v: HtmlValue): string {
  if (v === null || v === undefined || v === false) return "";
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(render).join("");
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1]!;
  });
  return new Html(out);
}

/** Markup the page itself owns (its stylesheet and script): never data from a run. */
export function trusted(text: string): Html {
  return new Html(text);
}

/** A relative URL to `path` (already relative, `/`-separated): each segment percent-encoded,
 *  so `login#3/out/a b.png` stays one file (`#` would start a fragment). */
export function relativeUrl(path: string): string {
  return path
    .split("/")
    .map((seg) => (seg === ".." || seg === "." ? seg : encodeURIComponent(seg)))
    .join("/");
}
