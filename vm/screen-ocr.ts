import { execa } from "execa";
import { findOnPath } from "./find-on-path.ts";

// Reading a screen by OCR: Debian's tesseract-ocr on a screendump. It is a dependency of
// getScreenText()/waitForText() only, so without it those two fail with how to install it.

export const TESSERACT_MISSING =
  "getScreenText()/waitForText() need tesseract for OCR: install it with `apt-get install tesseract-ocr` (Debian/Ubuntu)";

/** The text tesseract reads in an image file (PNG or PPM). */
export async function ocrImage(file: string): Promise<string> {
  const bin = findOnPath("tesseract");
  if (!bin) throw new Error(TESSERACT_MISSING);
  // --psm 6: one uniform block of text, which is what a text console is.
  const r = await execa(bin, [file, "stdout", "--psm", "6"], { reject: false, env: { OMP_THREAD_LIMIT: "1" } });
  if (r.exitCode !== 0) throw new Error(`tesseract failed on ${file} (exit code ${r.exitCode}): ${String(r.stderr).trim().split("\n").pop()}`);
  return String(r.stdout);
}
