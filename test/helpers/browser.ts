import { existsSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

/** Debian's chromium (`.ci/setup` installs it); playwright-core drives it and downloads nothing. */
export const CHROMIUM = process.env.HALTPOINT_TEST_CHROMIUM ?? "/usr/bin/chromium";

let browser: Promise<Browser> | undefined;

/** One real headless Chromium per test file. */
export function theBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (bash .ci/setup)`);
  browser ??= chromium.launch({ executablePath: CHROMIUM });
  return browser;
}

export async function closeBrowser(): Promise<void> {
  if (browser) await (await browser).close();
  browser = undefined;
}

export interface OpenedPage {
  page: Page;
  context: BrowserContext;
  /** Every URL the page requested (the page itself included). */
  requests: string[];
  /** Script errors, console errors and Content-Security-Policy violations. */
  errors: string[];
}

/**
 * Open a local HTML file. Any request that is not to the file system or a data: URI is
 * recorded and refused: a page that needs the network shows it in `requests`.
 */
export async function openPage(file: string, o: { javaScript?: boolean } = {}): Promise<OpenedPage> {
  const context = await (await theBrowser()).newContext({ javaScriptEnabled: o.javaScript ?? true, viewport: { width: 1280, height: 900 } });
  const requests: string[] = [];
  const errors: string[] = [];
  context.on("request", (r) => requests.push(r.url()));
  await context.route(/^(?!file:|data:)/, (route) => route.abort());
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") errors.push(`console ${m.type()}: ${m.text()}`);
  });
  await page.goto(pathToFileURL(file).href, { waitUntil: "load" });
  return { page, context, requests, errors };
}
