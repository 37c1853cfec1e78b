// Node option `vlans` on real guests: three machines on vlans [1], [1,2], [2]. The outer
// two cannot reach each other; both reach the middle one (NixOS virtualisation.vlans).
// (`timeout 10 wget`, not `wget -T`: Debian 12's busybox-static wget segfaults with -T.)
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { QemuMachine } from "../vm/qemu/qemu-machine.ts";
import { RunNetwork } from "../vm/qemu/run-network.ts";
import { resolveNodes } from "../vm/node-options.ts";
import { testMachineContext } from "./helpers/machine-context.ts";
import { qemuProcesses, qemuRuntime } from "./helpers/qemu.ts";
import { emptied } from "./helpers/settled.ts";

const env = testMachineContext();
const nodes = resolveNodes({ left: { vlans: [1], memory: 256 }, middle: { vlans: [1, 2], memory: 256 }, right: { vlans: [2], memory: 256 } }, "qemu", []);
const net = new RunNetwork(env.root, nodes);
let left: QemuMachine, middle: QemuMachine, right: QemuMachine;

before(async () => {
  const rt = await qemuRuntime();
  [left, middle, right] = nodes.map((n) => new QemuMachine(n.name, n.options, env.ctx, rt, net)) as [QemuMachine, QemuMachine, QemuMachine];
  await Promise.all([left, middle, right].map((m) => m.start()));
  for (const m of [left, middle, right]) await m.succeed(`mkdir -p /srv && hostname > /srv/who && httpd -p 80 -h /srv`);
});
after(async () => {
  await Promise.all([left, middle, right].map((m) => m?.cleanup()));
  await net.close();
  env.cleanup();
});

const fetchFrom = (m: QemuMachine, host: string) => m.execute(`timeout 10 wget -q -O - http://${host}/who`, { timeout: 60 });

test("machines sharing a vlan reach each other by name; the middle one has a NIC on each vlan", async () => {
  assert.equal((await middle.succeed("ip -o -4 addr show | awk '{print $2, $4}' | grep 192.168")).trim(), "eth1 192.168.1.2/24\neth2 192.168.2.2/24");
  assert.equal((await left.waitUntilSucceeds("timeout 10 wget -q -O - http://middle/who", { timeout: 60 })).trim(), "middle");
  assert.equal((await right.waitUntilSucceeds("timeout 10 wget -q -O - http://middle/who", { timeout: 60 })).trim(), "middle");
  assert.equal((await middle.succeed("timeout 10 wget -q -O - http://left/who")).trim(), "left");
  assert.equal((await middle.succeed("timeout 10 wget -q -O - http://right/who")).trim(), "right");
});

test("the outer two cannot reach each other, by name or by address; each knows the other's primary address, as NixOS lists every node", async () => {
  assert.match(await left.succeed("grep -w right /etc/hosts"), /^192\.168\.2\.3\s/m);
  assert.match(await right.succeed("grep -w left /etc/hosts"), /^192\.168\.1\.1\s/m);
  assert.notEqual((await fetchFrom(left, "right")).status, 0);
  assert.notEqual((await fetchFrom(left, "192.168.2.3")).status, 0);
  assert.notEqual((await fetchFrom(right, "192.168.1.1")).status, 0);
});

test("bad vlans are one line naming the node", () => {
  assert.throws(() => resolveNodes({ web: { vlans: [0] } }, "qemu", []), /^Error: node 'web': vlans must be a non-empty list of distinct integers from 1 to 255, got \[0\]$/);
  assert.throws(() => resolveNodes({ web: { vlans: [] } }, "qemu", []), /node 'web': vlans must be/);
});

test("no QEMU outlives the vlan tests", async () => {
  await Promise.all([left, middle, right].map((m) => m.cleanup()));
  assert.deepEqual(await emptied(() => qemuProcesses()), []);
});
