import { writeFile } from "node:fs/promises";
import { execa } from "execa";
import { findOnPath } from "./find-on-path.ts";

// Reading a screen by OCR: Debian's tesseract-ocr on a screendump. It is a dependency of
// getScreenText()/getScreenTextVariants()/waitForText() only, so without it those fail with how
// to install it.

export const TESSERACT_MISSING =
  "getScreenText()/getScreenTextVariants()/waitForText() need tesseract for OCR: install it with `apt-get install tesseract-ocr` (Debian/Ubuntu)";

/**
 * The text tesseract reads in an image file (PNG or PPM/PGM). `psm` is its page segmentation:
 * 6 (the default here), one uniform block of text, which is what a text console is; 4, one
 * column of lines of varying size, which reads a screen with a few scattered lines better.
 */
export async function ocrImage(file: string, psm: 4 | 6 = 6): Promise<string> {
  const bin = findOnPath("tesseract");
  if (!bin) throw new Error(TESSERACT_MISSING);
  const r = await execa(bin, [file, "stdout", "--psm", String(psm)], { reject: false, env: { OMP_THREAD_LIMIT: "1" } });
  if (r.exitCode !== 0) throw new Error(`tesseract failed on ${file} (exit code ${r.exitCode}): ${String(r.stderr).trim().split("\n").pop()}`);
  return String(r.stdout);
}

/**
 * A binary PPM (P6, what QEMU's screendump writes without a format) as a PGM (P5) twice as wide
 * and as high, in gray, dark text on light: tesseract's models were trained on print, and a text
 * console is light text on black in glyphs 8 or 9 pixels wide, both of which it reads worse.
 */
export function ppmToInvertedDoubledPgm(ppm: Buffer): Buffer {
  // Header: "P6", width, height, maxval, each after whitespace (comments: QEMU writes none).
  const fields: number[] = [];
  let i = 2;
  if (ppm.toString("latin1", 0, 2) !== "P6") throw new Error("not a binary PPM (P6) image");
  while (fields.length < 3) {
    while (i < ppm.length && /\s/.test(String.fromCharCode(ppm[i]!))) i++;
    const start = i;
    while (i < ppm.length && /\d/.test(String.fromCharCode(ppm[i]!))) i++;
    if (i === start) throw new Error("a PPM header field is not a number");
    fields.push(Number(ppm.toString("latin1", start, i)));
  }
  i++; // the one whitespace byte before the pixels
  const [w, h, max] = fields as [number, number, number];
  if (max !== 255) throw new Error(`a PPM with maxval ${max} (only 255 is read)`);
  if (ppm.length - i < w * h * 3) throw new Error(`a ${w}x${h} PPM with ${ppm.length - i} bytes of pixels`);
  const header = Buffer.from(`P5\n${w * 2} ${h * 2}\n255\n`, "latin1");
  const out = Buffer.alloc(header.length + w * h * 4);
  header.copy(out);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = i + (y * w + x) * 3;
      // Rec. 601 luma, then inverted.
      const v = 255 - Math.round(0.299 * ppm[p]! + 0.587 * ppm[p + 1]! + 0.114 * ppm[p + 2]!);
      const o = header.length + y * 2 * w * 2 + x * 2;
      out[o] = out[o + 1] = out[o + w * 2] = out[o + w * 2 + 1] = v;
    }
  }
  return out;
}

/**
 * Several readings of one PPM screendump (NixOS `get_screen_text_variants`): the image as it
 * is (one block, as getScreenText reads it), as one column of lines, and gray, inverted and
 * doubled (ppmToInvertedDoubledPgm). The three tesseracts run side by side; a reading that
 * finds no text is an empty string, tesseract failing on any of them is an error.
 */
export async function ocrVariants(ppmFile: string, ppm: Buffer): Promise<string[]> {
  const pgmFile = `${ppmFile}.pgm`;
  await writeFile(pgmFile, ppmToInvertedDoubledPgm(ppm));
  return Promise.all([ocrImage(ppmFile, 6), ocrImage(ppmFile, 4), ocrImage(pgmFile, 6)]);
}
