// The queue-mode recipes users paste (docs/recipes/): valid YAML of the right shape, and
// the haltpoint commands in them give addresses haltpoint accepts, the same one for the
// hosts and the report.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { ROOT } from "./helpers/cli.ts";
import { parseQueueAddress } from "../orchestrator/queue/address.ts";

const recipe = (f: string) => readFileSync(join(ROOT, "docs/recipes", f), "utf8");

/** The --queue / queue report addresses in a shell line, with variables given example values. */
function addresses(script: string, vars: Record<string, string>): string[] {
  const filled = script.replace(/\$\{\{\s*([^}]+?)\s*\}\}|\$\{?(\w+)\}?/g, (_, gh: string | undefined, sh: string | undefined) => vars[(gh ?? sh)!] ?? `<${gh ?? sh}>`);
  return [...filled.matchAll(/(?:--queue|queue report) "([^"]+)"/g)].map((m) => m[1]!);
}

test("the Kubernetes recipe: a Redis Deployment and Service, an Indexed Job of hosts reaching it, pod 0 writes the report", () => {
  const docs = parseAllDocuments(recipe("fleet-kubernetes.yaml"));
  for (const d of docs) assert.deepEqual(d.errors, []);
  const objs = docs.map((d) => d.toJS());
  const byKind = (k: string) => objs.filter((o) => o.kind === k);
  const [redis] = byKind("Deployment");
  const [svc] = byKind("Service");
  const [job] = byKind("Job");
  assert.equal(redis.spec.template.spec.containers[0].ports[0].containerPort, 6379);
  assert.deepEqual(svc.spec.selector, redis.spec.selector.matchLabels, "the Service selects the Redis pods");
  assert.equal(job.spec.completionMode, "Indexed");
  assert.equal(job.spec.parallelism, job.spec.completions);
  const c = job.spec.template.spec.containers[0];
  assert.ok(c.resources.limits["devices.kubevirt.io/kvm"], "KVM through a device plugin");
  const script = c.args.join("\n");
  const urls = addresses(script, { SUITE: "3f1c-uid", POD_NAME: "haltpoint-suite-0-x" });
  assert.equal(urls.length, 2, script);
  assert.equal(new Set(urls).size, 1, "hosts and report use one queue");
  const a = parseQueueAddress(urls[0]!);
  assert.equal(a.host, svc.metadata.name, "the address is the Service's");
  assert.equal(a.port, svc.spec.ports[0].port);
  assert.match(script, /JOB_COMPLETION_INDEX" = 0 \]; then\s+npx haltpoint queue report/);
});

test("the GitHub Actions recipe: a matrix of hosts on one Redis, then the report job", () => {
  const wf = parse(recipe("fleet-github-actions.yml"));
  assert.deepEqual(wf.jobs.hosts.strategy.matrix.host, [1, 2, 3]);
  assert.equal(wf.jobs.report.needs, "hosts");
  const vars = { HALTPOINT_REDIS: "redis://:pw@redis.example.com:6379", "github.run_id": "123", "github.run_attempt": "1", "matrix.host": "2" };
  const hostUrls = wf.jobs.hosts.steps.flatMap((s: { run?: string }) => (s.run ? addresses(s.run, vars) : []));
  const reportUrls = wf.jobs.report.steps.flatMap((s: { run?: string }) => (s.run ? addresses(s.run, vars) : []));
  assert.equal(hostUrls.length, 1);
  assert.deepEqual(reportUrls, hostUrls, "the report reads the hosts' queue");
  assert.equal(parseQueueAddress(hostUrls[0]!).name, "123-1", "one queue per workflow run (and attempt)");
  for (const s of [...wf.jobs.hosts.steps, ...wf.jobs.report.steps]) if (s.run?.includes("--queue") || s.run?.includes("queue report")) assert.ok(s.env.HALTPOINT_REDIS, "the address comes from a secret");
});
