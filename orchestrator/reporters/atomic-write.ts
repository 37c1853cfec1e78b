import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import writeFileAtomic from "write-file-atomic";

/** Reports are written whole or not at all: a CI never reads half a file. */
export async function writeReport(file: string, data: string): Promise<void> {
  const abs = resolve(file);
  await mkdir(dirname(abs), { recursive: true });
  await writeFileAtomic(abs, data);
}
