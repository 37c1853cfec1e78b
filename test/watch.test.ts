// `haltpoint run --watch` through a real pseudo-terminal (script(1)): the first run, then a
// rerun of only the test whose file changed, a rerun of the test that imports a changed
// helper, a run in flight stopped (its result marked superseded, its machine's processes gone)
// and started again on a second change, and `q` quitting with nothing left behind.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { BIN } from "./helpers/cli.ts";
import { processesMatching } from "./helpers/machine-context.ts";
import { emptied, settled } from "./helpers/settled.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

let dir: string;
const MARK = `hp-watch-hold-${process.pid}`;
const testFile = (body: string, imports = ""): string => `import { defineTest } from "haltpoint";\n${imports}\nexport default defineTest({ nodes: { m: { backend: "local" } }, async testScript({ m }) { ${body} } });\n`;

before(() => {
  dir = tempDir("hp-watch-", "/var/tmp");
  mkdirSync(join(dir, "tests", "lib"), { recursive: true });
  writeFileSync(join(dir, "tests", "lib", "helper.ts"), `export const word = (): string => "first-word";\n`);
  writeFileSync(join(dir, "tests", "a.vmtest.ts"), testFile("await m.succeed(`echo ${word()}`);", `import { word } from "./lib/helper.ts";`));
  writeFileSync(join(dir, "tests", "b.vmtest.ts"), testFile(`await m.succeed("echo b-one");`));
  writeFileSync(join(dir, "tests", "c.vmtest.ts"), testFile(`await m.succeed("echo c-quick");`));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("--watch on a terminal: reruns what a change touches, stops a run in flight on a second change, quits on q", async () => {
  const child = execa("script", ["-qfec", `stty rows 50 cols 200; node ${BIN} run --watch tests --jobs 2`, "/dev/null"], {
    cwd: dir,
    reject: false,
    all: true,
    env: { NO_COLOR: "1", CI: "" },
  });
  let out = "";
  child.all!.on("data", (c: Buffer) => (out += c.toString().replace(/\r/g, "")));
  /** Wait for `re` in the output after `from`; the index just past the match. */
  const waitFor = async (re: RegExp, from: number, ms = 90_000): Promise<number> => {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(out.slice(from));
      if (m) return from + m.index + m[0].length;
      if (Date.now() > end || child.exitCode !== null) throw new Error(`no ${re} after offset ${from}; output:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const WAITING = /watch: waiting for changes \(press a to rerun all, f to rerun failed, Enter to rerun, q to quit, h for help\)\n/;
  try {
    let at = await waitFor(WAITING, 0);
    const first = out.slice(0, at);
    for (const t of ["a", "b", "c"]) assert.match(first, new RegExp(`^${t}#1: PASS`, "m"), first);

    // Only the test whose file changed.
    writeFileSync(join(dir, "tests", "b.vmtest.ts"), testFile(`await m.succeed("echo b-two");`));
    let from = at;
    at = await waitFor(WAITING, from);
    let seg = out.slice(from, at);
    assert.match(seg, /^watch: tests\/b\.vmtest\.ts changed → running 1 test file: tests\/b\.vmtest\.ts$/m, seg);
    assert.match(seg, /^b#1 m: must succeed: echo b-two$/m);
    assert.match(seg, /^b#1: PASS/m);
    assert.doesNotMatch(seg, /^[ac]#1/m, "only b reran");

    // A helper a test imports: that test reruns, with the helper's new text.
    writeFileSync(join(dir, "tests", "lib", "helper.ts"), `export const word = (): string => "second-word";\n`);
    from = at;
    at = await waitFor(WAITING, from);
    seg = out.slice(from, at);
    assert.match(seg, /^watch: tests\/lib\/helper\.ts changed → running 1 test file: tests\/a\.vmtest\.ts$/m, seg);
    assert.match(seg, /^a#1 m: must succeed: echo second-word$/m);
    assert.doesNotMatch(seg, /^[bc]#1/m, "only a reran");

    // A run in flight, changed again: stopped (superseded, its processes gone) and run again.
    writeFileSync(join(dir, "tests", "c.vmtest.ts"), testFile(`await m.succeed("(exec -a ${MARK} sleep 1000)");`));
    from = at;
    at = await waitFor(new RegExp(`^c#1 m: must succeed: \\(exec -a ${MARK} sleep 1000\\)$`, "m"), from);
    const holding = await settled(() => processesMatching(MARK), (p) => p.length > 0);
    assert.ok(holding.length > 0, "the held command runs");
    writeFileSync(join(dir, "tests", "c.vmtest.ts"), testFile(`await m.succeed("echo c-again");`));
    at = await waitFor(WAITING, at);
    seg = out.slice(from, at);
    assert.match(seg, /^watch: tests\/c\.vmtest\.ts changed while its run is in flight → stopping that run, then running tests\/c\.vmtest\.ts$/m, seg);
    assert.match(seg, /^!!! c#1: FAIL .*superseded: tests\/c\.vmtest\.ts changed/m);
    assert.match(seg, /^ {2}0 passed, 1 failed in .* \(superseded\)$/m);
    assert.match(seg, /^c#1 m: must succeed: echo c-again$/m);
    assert.match(seg.slice(seg.lastIndexOf("c-again")), /^c#1: PASS/m);
    assert.deepEqual(await emptied(() => processesMatching(MARK)), [], "the stopped run's shell and sleep are gone");

    child.stdin!.write("q");
    const r = await child;
    assert.equal(r.exitCode, 0, out);
    assert.match(out, /^watch: quitting$/m);
    // Nothing of this run is left: no haltpoint, no esbuild service (the import graph's), no machine shell.
    for (const needle of [BIN, "esbuild", MARK]) assert.deepEqual(await emptied(() => processesMatching(needle)), [], needle);
  } finally {
    child.kill("SIGKILL");
  }
});
