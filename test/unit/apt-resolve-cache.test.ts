// The guest image's package versions, kept while apt's state is unchanged (vm/image/apt-resolve-cache.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolvedWhileAptUnchanged } from "../../vm/image/apt-resolve-cache.ts";
import { tempDir } from "../helpers/temp-dirs.ts";

test("apt is asked again only when its lists, config or dpkg status changed, or the cache is unreadable", async () => {
  const dir = tempDir("hp-aptcache-");
  try {
    const lists = join(dir, "lists");
    mkdirSync(lists);
    writeFileSync(join(lists, "deb.debian.org_Packages"), "a");
    const status = join(dir, "status");
    writeFileSync(status, "s");
    const cacheFile = join(dir, "cache", "apt-resolved.json");
    let asked = 0;
    const resolve = async () => [{ name: "busybox-static", version: `1:1.35.0-${++asked}` }];
    const get = () => resolvedWhileAptUnchanged(cacheFile, resolve, [lists, status]);
    assert.deepEqual(await get(), [{ name: "busybox-static", version: "1:1.35.0-1" }]);
    assert.deepEqual(await get(), [{ name: "busybox-static", version: "1:1.35.0-1" }], "unchanged: the kept answer");
    assert.equal(asked, 1);
    writeFileSync(join(lists, "deb.debian.org_Packages"), "ab"); // apt-get update
    assert.equal((await get())[0]!.version, "1:1.35.0-2");
    const later = new Date(Date.now() + 5000);
    utimesSync(status, later, later); // a package installed
    assert.equal((await get())[0]!.version, "1:1.35.0-3");
    writeFileSync(join(lists, "new-source_Packages"), "c"); // a new source
    assert.equal((await get())[0]!.version, "1:1.35.0-4");
    writeFileSync(cacheFile, "{not json");
    assert.equal((await get())[0]!.version, "1:1.35.0-5", "an unreadable cache resolves again");
    assert.equal((await get())[0]!.version, "1:1.35.0-5");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
