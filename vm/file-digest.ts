import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

/**
 * The sha256 of a file, streamed (snapshots and bundles are tens of MiB). A snapshot's zstd
 * stream is fed to QEMU by `zstd -dc`, whose checksum error at the end of a corrupt stream
 * QEMU never sees: the digest recorded at save time is what tells a damaged file.
 */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path, { highWaterMark: 1 << 20 })
      .on("data", (c) => hash.update(c))
      .on("error", reject)
      .on("end", () => resolve(hash.digest("hex")));
  });
}

/** Why `path` is not the file whose sha256 is `expected` (or undefined when it is). */
export async function verifyDigest(path: string, expected: string): Promise<string | undefined> {
  const actual = await sha256File(path).catch((e: NodeJS.ErrnoException) => ({ error: e.code ?? e.message }));
  if (typeof actual !== "string") return `unreadable (${actual.error})`;
  return actual === expected ? undefined : "its bytes differ from the saved ones (sha256)";
}
