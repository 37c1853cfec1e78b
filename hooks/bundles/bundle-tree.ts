// A local machine's directory in a bundle (`<machine>/files/`), held to the same rule as the
// bundle's files: its size and digest are in the signed manifest and checked before revive
// copies it into a sandbox. The digest is over the tree: each entry's relative path and kind,
// a regular file's size and sha256, a symbolic link's target (links are kept, never followed).
// Anything else (a socket, a FIFO, a device) is not a bundle's.

import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { sha256File } from "../../vm/file-digest.ts";

export interface TreeDigest {
  /** The bytes of its regular files. */
  bytes: number;
  sha256: string;
}

/** The digest of the tree under `dir` (a real directory); throws naming the first entry that is not a file, directory or link. */
export async function treeDigest(dir: string): Promise<TreeDigest> {
  const hash = createHash("sha256");
  let bytes = 0;
  const walk = async (rel: string): Promise<void> => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, r));
      if (st.isDirectory()) {
        hash.update(`d\0${r}\0`);
        await walk(r);
      } else if (st.isFile()) {
        bytes += st.size;
        hash.update(`f\0${r}\0${st.size}\0${await sha256File(join(dir, r))}\0`);
      } else if (st.isSymbolicLink()) {
        hash.update(`l\0${r}\0${readlinkSync(join(dir, r))}\0`);
      } else {
        throw new Error(`${r}: not a regular file, directory or symbolic link`);
      }
    }
  };
  await walk("");
  return { bytes, sha256: hash.digest("hex") };
}
