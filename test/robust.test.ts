// Hostile input and faults (issue #17): each test reproduces one defect through the real CLI.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { execa } from "execa";
import { haltpoint, watchOutput } from "./helpers/cli.ts";
import { tempDir } from "./helpers/temp-dirs.ts";

/** Mounts made under a scratch dir: unmounted before it is removed. */
const mountsOf = new Map<string, string[]>();

/** A scratch dir with `<dir>/suite/<file>` test files; removed (after its mounts) after the test. */
function scratch(t: { after(fn: () => Promise<void>): void }, files: Record<string, string>): { dir: string; suite: string } {
  const dir = tempDir("hp-robust-");
  mountsOf.set(dir, []);
  t.after(async () => {
    for (const m of mountsOf.get(dir)!.reverse()) await execa("umount", [m], { reject: false });
    mountsOf.delete(dir);
    rmSync(dir, { recursive: true, force: true });
  });
  const suite = join(dir, "suite");
  mkdirSync(suite);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(suite, name), text);
  return { dir, suite };
}

/** A test with no machine that passes (or runs `body`); a plain object, as the scratch dir cannot import "haltpoint". */
const named = (name: string, body = "") => `export default { name: ${JSON.stringify(name)}, nodes: {}, async testScript(ctx) { ${body} } };\n`;

function listTree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
}

test("hostile and overlong test names stay one unique directory under --log-dir; the real name stays in the reports", async (t) => {
  const long = "n".repeat(300);
  const { dir, suite } = scratch(t, {
    "a.vmtest.mts": named("../../x"),
    "b.vmtest.mts": named("/etc/evil"),
    "c.vmtest.mts": named("a/b/c"),
    "d.vmtest.mts": named("x"),
    "e.vmtest.mts": named("./x"),
    "f.vmtest.mts": named("foo/../x"),
    "g.vmtest.mts": named(long),
  });
  const logs = join(dir, "deep", "er", "logs");
  const r = await haltpoint(["run", suite, "--log-dir", logs, "--json", join(dir, "report.json")]);
  assert.equal(r.exitCode, 0, r.all);
  // Nothing outside the log dir: the scratch dir holds only suite/, deep/ and the report.
  assert.deepEqual(readdirSync(dir).sort(), ["deep", "report.json", "suite"]);
  assert.deepEqual(readdirSync(join(dir, "deep")), ["er"]);
  const runDirs = readdirSync(logs).sort();
  assert.equal(runDirs.length, 7, runDirs.join("\n"));
  assert.ok(runDirs.includes("x#1"), runDirs.join("\n"));
  for (const d of runDirs) {
    assert.ok(d.length <= 110, d);
    assert.ok(existsSync(join(logs, d, "run.jsonl")), d);
  }
  const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
  const names = report.tests.map((x: { name: string }) => x.name).sort();
  assert.deepEqual(names, ["../../x", "./x", "/etc/evil", "a/b/c", "foo/../x", long, "x"].sort());
  for (const x of report.tests) {
    const run = x.runs[0];
    assert.equal(run.outcome, "passed");
    assert.equal(run.key, `${x.name}#1`);
    assert.ok(run.logDir.startsWith(logs + "/") && !run.logDir.slice(logs.length + 1).includes("/"), run.logDir);
    const firstLine = JSON.parse(readFileSync(join(run.logDir, "run.jsonl"), "utf8").split("\n")[0]!);
    assert.equal(firstLine.test, x.name);
  }
});

test("two files with the same real name are still rejected", async (t) => {
  const { dir, suite } = scratch(t, { "a.vmtest.mts": named("same"), "b.vmtest.mts": named("same") });
  const r = await haltpoint(["run", suite, "--log-dir", join(dir, "logs")]);
  assert.equal(r.exitCode, 2, r.all);
  assert.match(r.all, /test name 'same' is already used by/);
});

test("a plain default-exported object gets defineTest's checks", async (t) => {
  const plain = (fields: string) => `export default { ${fields} nodes: {}, async testScript() {} };\n`;
  const { dir, suite } = scratch(t, {
    "num.vmtest.mts": plain("name: 42,"),
    "empty.vmtest.mts": plain('name: "",'),
    "timeout.vmtest.mts": plain('name: "t", globalTimeout: "soon",'),
    "ok.vmtest.mts": plain('name: "plain-ok",'),
  });
  const r = await haltpoint(["run", suite, "--log-dir", join(dir, "logs"), "--json", join(dir, "report.json")]);
  assert.equal(r.exitCode, 2, r.all);
  assert.match(r.all, /num\.vmtest\.mts: `name` must be a non-empty string/);
  assert.match(r.all, /empty\.vmtest\.mts: `name` must be a non-empty string/);
  assert.match(r.all, /timeout\.vmtest\.mts: `globalTimeout` must be a positive number of seconds/);
  const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
  assert.deepEqual(report.tests.map((x: { name: string }) => x.name), ["plain-ok"]);
  assert.ok(!existsSync(join(dir, "logs", "42#1")) && !existsSync(join(dir, "logs", "#1")));
});

test("hostile thrown values are described, the worker does not crash", async (t) => {
  const { dir, suite } = scratch(t, {
    "nullproto.vmtest.mts": named("nullproto", `const o = Object.create(null); o.code = 7; throw o;`),
    "proxy.vmtest.mts": named("proxy", `throw new Proxy({}, { get() { throw new Error("trap"); }, getPrototypeOf() { throw new Error("trap"); } });`),
    "getter.vmtest.mts": named("getter", `const e = new Error("x"); Object.defineProperty(e, "message", { get() { throw new Error("getter"); } }); throw e;`),
    "symbol.vmtest.mts": named("symbol", `throw Symbol("sym");`),
  });
  const r = await haltpoint(["run", suite, "--log-dir", join(dir, "logs"), "--json", join(dir, "report.json")]);
  assert.equal(r.exitCode, 1, r.all);
  assert.doesNotMatch(r.all, /worker crashed|Cannot convert/);
  const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
  const errors = Object.fromEntries(report.tests.map((x: { name: string; runs: { outcome: string; error: string }[] }) => [x.name, x.runs[0]!]));
  for (const name of ["nullproto", "proxy", "getter", "symbol"]) assert.equal(errors[name].outcome, "failed", name);
  assert.match(errors.nullproto.error, /code: 7/);
  assert.match(errors.symbol.error, /Symbol\(sym\)/);
  assert.equal(typeof errors.proxy.error, "string");
  assert.equal(typeof errors.getter.error, "string");
});

export { listTree };

test("unusable --log-dir, report paths and state root are a one-line usage error before any test runs", async (t) => {
  const { dir, suite } = scratch(t, { "a.vmtest.mts": named("a") });
  const file = join(dir, "a-file");
  writeFileSync(file, "");
  const ro = join(dir, "ro");
  mkdirSync(ro);
  // A real read-only file system: a read-only bind mount of a scratch dir (root), else mode 555 as nobody.
  const mounted = process.getuid?.() === 0 && (await execa("mount", ["--bind", "-o", "ro", ro, ro], { reject: false })).exitCode === 0;
  if (mounted) mountsOf.get(dir)!.push(ro);
  const cases: [string[], RegExp][] = [
    [["--log-dir", "/proc/hp-logs"], /^haltpoint: --log-dir \/proc\/hp-logs: \/proc is a kernel file system/],
    [["--log-dir", "/sys/hp/logs"], /^haltpoint: --log-dir \/sys\/hp\/logs: \/sys is a kernel file system/],
    [["--log-dir", file], /^haltpoint: --log-dir .*a-file: .*a-file is not a directory/],
    [["--log-dir", join(file, "sub")], /^haltpoint: --log-dir .*a-file\/sub: .*a-file is not a directory/],
    [["--json", join(dir, "r", "report.json"), "--junit", "/proc/j.xml"], /^haltpoint: --junit \/proc\/j\.xml: \/proc is a kernel file system/],
    [["--json", dir], /^haltpoint: --json .*: is a directory/],
  ];
  if (mounted) {
    cases.push([["--log-dir", join(ro, "logs")], /^haltpoint: --log-dir .*ro\/logs: .*ro is not writable \(EROFS\)/]);
    cases.push([["--html", join(ro, "r.html")], /^haltpoint: --html .*ro\/r\.html: .*ro is not writable \(EROFS\)/]);
  }
  for (const [args, re] of cases) {
    const r = await haltpoint(["run", suite, ...(args.includes("--log-dir") ? [] : ["--log-dir", join(dir, "logs")]), ...args], { timeout: 60_000 });
    assert.equal(r.exitCode, 2, `${args.join(" ")}: ${r.all}`);
    assert.match(r.all, re);
    assert.equal(r.all.trim().split("\n").length, 1, r.all);
  }
  const state = await haltpoint(["run", suite, "--log-dir", join(dir, "logs")], { env: { HALTPOINT_STATE_DIR: "/proc/hp-state" } });
  assert.equal(state.exitCode, 2, state.all);
  assert.match(state.all, /^haltpoint: HALTPOINT_STATE_DIR \/proc\/hp-state: \/proc is a kernel file system/);
});

/** A full 64 KiB tmpfs (root only): writes there fail with ENOSPC, though the dir is writable. */
async function fullDisk(dir: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const mnt = join(dir, "full");
  mkdirSync(mnt);
  if ((await execa("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt], { reject: false })).exitCode !== 0) return undefined;
  mountsOf.get(dir)!.push(mnt);
  await execa("sh", ["-c", `dd if=/dev/zero of=${mnt}/filler bs=4k 2>/dev/null; true`]);
  return mnt;
}

test("an unwritable --junit does not lose the --json report; exit 3 with one line", async (t) => {
  const { dir, suite } = scratch(t, { "a.vmtest.mts": named("a") });
  const full = await fullDisk(dir);
  if (!full) return t.skip("needs root to mount a tmpfs");
  const r = await haltpoint(["run", suite, "--log-dir", join(dir, "logs"), "--json", join(dir, "report.json"), "--junit", join(full, "junit.xml")]);
  assert.equal(r.exitCode, 3, r.all);
  assert.match(r.all, new RegExp(`^haltpoint: cannot write the --junit report ${full}/junit.xml: ENOSPC$`, "m"));
  assert.doesNotMatch(r.all, /internal error/);
  const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
  assert.equal(report.tests[0].runs[0].outcome, "passed");
});

test("runs that never ran are in the JUnit report as skipped, with the reason", async (t) => {
  const { dir, suite } = scratch(t, { "a.vmtest.mts": named("a-fails", `throw new Error("boom");`), "b.vmtest.mts": named("b") });
  const junit = join(dir, "junit.xml");
  const r = await haltpoint(["run", suite, "--jobs", "1", "--repeat", "2", "--max-fail", "1", "--log-dir", join(dir, "logs"), "--junit", junit, "--json", join(dir, "report.json")]);
  assert.equal(r.exitCode, 1, r.all);
  const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
  const notRun: string[] = report.tests.flatMap((x: { name: string; notRun: number[] }) => x.notRun.map((n) => `${x.name}#${n}`));
  assert.ok(notRun.length >= 2, JSON.stringify(report.summary));
  const xml = readFileSync(junit, "utf8");
  for (const key of notRun) {
    assert.match(xml, new RegExp(`<testcase name="${key}"[^>]*>\\s*<skipped message="not run: no more runs were started[^"]*"/>`), xml);
  }
  const valid = await execa("xmllint", ["--noout", "--schema", join(import.meta.dirname, "fixtures", "junit", "junit.xsd"), junit], { reject: false, all: true });
  assert.equal(valid.exitCode, 0, valid.all);
});

test("after SIGTERM, the runs that never started are skipped test cases in JUnit", async (t) => {
  const { dir, suite } = scratch(t, {
    "a.vmtest.mts": `export default { name: "a-hangs", nodes: {}, async testScript(ctx) { ctx.log("hanging now"); await new Promise(() => {}); } };\n`,
    "b.vmtest.mts": named("b-never"),
  });
  const junit = join(dir, "junit.xml");
  const child = haltpoint(["run", suite, "--jobs", "1", "--abort-grace", "1", "--log-dir", join(dir, "logs"), "--junit", junit]);
  const out = watchOutput(child);
  await out.waitFor(/hanging now/);
  child.kill("SIGTERM");
  const r = await child;
  assert.equal(r.exitCode, 130, r.all);
  const xml = readFileSync(junit, "utf8");
  assert.match(xml, /<testcase name="b-never#1"[^>]*>\s*<skipped message="not run: the run was interrupted before it started"\/>/, xml);
});

test("--help says --worker-memory does not limit Buffers, and lists exit status 3", async () => {
  const r = await haltpoint(["run", "--help"]);
  assert.equal(r.exitCode, 0);
  assert.match(r.all.replace(/\s+/g, " "), /--worker-memory <mib> V8 heap limit of each worker thread \(Buffers and other memory outside the JS heap are not limited\)/);
  assert.match(r.all.replace(/\s+/g, " "), /3 a report could not be written/);
});

test("a full log disk truncates the logs with one notice; results and reports survive", async (t) => {
  const { dir, suite } = scratch(t, { "a.vmtest.mts": named("a", `ctx.log("x".repeat(10000));`), "b.vmtest.mts": named("b"), "c.vmtest.mts": named("c") });
  const full = await fullDisk(dir);
  if (!full) return t.skip("needs root to mount a tmpfs");
  const r = await haltpoint(["run", suite, "--log-dir", join(full, "logs"), "--json", join(dir, "report.json"), "--junit", join(dir, "junit.xml")]);
  assert.equal(r.exitCode, 0, r.all);
  assert.equal(r.all.match(/cannot write run logs \(ENOSPC/g)?.length, 1, r.all);
  assert.match(r.all, /3 passed/);
  const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
  assert.deepEqual(report.tests.map((x: { runs: { outcome: string }[] }) => x.runs[0]!.outcome), ["passed", "passed", "passed"]);
  assert.match(readFileSync(join(dir, "junit.xml"), "utf8"), /<testsuites[^>]*tests="3"/);
});

test("a late error from a finished test is a notice naming it; the run goes on and the next test on that worker is not failed", async (t) => {
  const marks = tempDir("hp-robust-marks-");
  t.after(() => rmSync(marks, { recursive: true, force: true }));
  const m = (name: string) => JSON.stringify(join(marks, name));
  // The late one's timer fires while the next test runs: the next test waits for its mark.
  const late = (name: string, mark: string, how: string) =>
    `import { writeFileSync } from "node:fs";\nexport default { name: "${name}", nodes: {}, async testScript() { setTimeout(() => { writeFileSync(${m(mark)}, ""); ${how} }, 200); } };\n`;
  const waitsFor = (name: string, mark: string) =>
    `import { existsSync } from "node:fs";\nexport default { name: "${name}", nodes: {}, async testScript() { while (!existsSync(${m(mark)})) await new Promise((r) => setTimeout(r, 20)); for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 20)); } };\n`;
  const { dir, suite } = scratch(t, {
    "a.vmtest.mts": late("a-late-throw", "a", `throw new Error("late boom");`),
    "b.vmtest.mts": waitsFor("b-innocent", "a"),
    "c.vmtest.mts": late("c-late-reject", "c", `void Promise.reject(new Error("late rejection"));`),
    "d.vmtest.mts": waitsFor("d-innocent", "c"),
    "e.vmtest.mts": `export default { name: "e-own", nodes: {}, async testScript() { setTimeout(() => { throw new Error("own timer"); }, 10); await new Promise(() => {}); } };\n`,
    "f.vmtest.mts": named("f-after"),
  });
  const r = await haltpoint(["run", suite, "--jobs", "1", "--log-dir", join(dir, "logs"), "--json", join(dir, "report.json"), "--junit", join(dir, "junit.xml")]);
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.all, /late error from a-late-throw#1, after it finished \(uncaughtException\): late boom/);
  assert.match(r.all, /late error from c-late-reject#1, after it finished \(unhandledRejection\): late rejection/);
  assert.doesNotMatch(r.all, /Emitted 'error'|internal error/);
  const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
  const outcome = Object.fromEntries(report.tests.map((x: { name: string; runs: { outcome: string; error?: string }[] }) => [x.name, x.runs[0]!]));
  for (const name of ["a-late-throw", "b-innocent", "c-late-reject", "d-innocent", "f-after"]) assert.equal(outcome[name].outcome, "passed", `${name}: ${r.all}`);
  assert.equal(outcome["e-own"].outcome, "failed");
  assert.equal(outcome["e-own"].error, "own timer");
  assert.ok(existsSync(join(dir, "junit.xml")));
});

test("the next run sweeps the state dir of a SIGKILLed orchestrator, and only dirs whose owner is gone", async (t) => {
  // Under /var/tmp as the real state root is (a local sandbox has a private /tmp).
  const base = tempDir("hp-robust-state-", "/var/tmp");
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const startOf = (pid: number) => { const s = readFileSync(`/proc/${pid}/stat`, "utf8"); return s.slice(s.lastIndexOf(")") + 2).split(" ")[19]; };
  const dead = { pid: spawnSync("true").pid };
  const keep = { live: { pid: process.pid, start: startOf(process.pid) } };
  const mk = (name: string, owner?: object, uid?: number) => {
    const d = join(base, name);
    mkdirSync(d);
    if (owner) writeFileSync(join(d, "owner.json"), JSON.stringify(owner));
    if (uid !== undefined) chownSync(d, uid, uid);
    return d;
  };
  mk("hp-aaaaaaaaaa", keep.live); // a running orchestrator's
  mk("hp-bbbbbbbbbb"); // no owner file: not known to be ours
  if (process.getuid?.() === 0) mk("hp-cccccccccc", { pid: dead.pid, start: "1" }, 65534); // another user's
  mk("hp-ticks-dddddd", { pid: dead.pid, start: "1" }); // not a state root's name

  const mark = join(base, "started");
  const { dir, suite } = scratch(t, {
    "hang.vmtest.mts": `import { writeFileSync } from "node:fs";\nexport default { name: "hang", nodes: { m: {} }, async testScript({ m }) { await m.succeed("true"); writeFileSync(${JSON.stringify(mark)}, ""); await new Promise(() => {}); } };\n`,
  });
  const env = { HALTPOINT_STATE_DIR: base };
  const child = haltpoint(["run", suite, "--log-dir", join(dir, "logs1")], { env });
  while (!existsSync(mark)) await new Promise((r) => setTimeout(r, 50));
  const before = readdirSync(base).filter((n) => /^hp-[0-9a-f]{10}$/.test(n) && !/^hp-(a+|b+|c+|e+)$/.test(n));
  assert.equal(before.length, 1, readdirSync(base).join(" "));
  child.kill("SIGKILL");
  await child;
  assert.ok(existsSync(join(base, before[0]!)), "a SIGKILLed orchestrator leaves its state dir");
  mk("hp-eeeeeeeeee", { pid: process.pid, start: "0" }); // our pid, another start: a reused pid

  const { suite: quick } = scratch(t, { "q.vmtest.mts": named("quick") });
  const r = await haltpoint(["run", quick, "--log-dir", join(dir, "logs2")], { env });
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.all, new RegExp(`removed 2 state directories of haltpoint runs that no longer exist: .*${before[0]}`));
  const after = readdirSync(base).sort();
  const expected = ["hp-aaaaaaaaaa", "hp-bbbbbbbbbb", ...(process.getuid?.() === 0 ? ["hp-cccccccccc"] : []), "hp-ticks-dddddd", "started"].sort();
  assert.deepEqual(after, expected);
});

test("a hostile value thrown while a file loads is a load error that describes it", async (t) => {
  const { dir, suite } = scratch(t, { "top.vmtest.mts": `const o = Object.create(null); o.where = "top level"; throw o;\nexport default {};\n` });
  const r = await haltpoint(["run", suite, "--log-dir", join(dir, "logs")]);
  assert.equal(r.exitCode, 2, r.all);
  assert.match(r.all, /!!! \S+top\.vmtest\.mts: cannot load: \[Object: null prototype\] \{ where: 'top level' \}/);
  assert.doesNotMatch(r.all, /Cannot convert|worker crashed/);
});
