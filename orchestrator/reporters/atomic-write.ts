import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import writeFileAtomic from "write-file-atomic";

/** Reports are written whole or not at all: a CI never reads half a file. */
export async function writeReport(file: string, data: string, what = "report"): Promise<void> {
  const abs = resolve(file);
  try {
    await mkdir(dirname(abs), { recursive: true });
    await writeFileAtomic(abs, data);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`cannot write the ${what} ${abs}: ${err.code ?? err.message}`, { cause: e });
  }
}
