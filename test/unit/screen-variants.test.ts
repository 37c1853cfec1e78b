// The gray, inverted, doubled copy of a screendump that getScreenTextVariants reads besides the
// screendump itself (vm/screen-ocr.ts): its pixels checked one by one on a small real PPM.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ppmToInvertedDoubledPgm } from "../../vm/screen-ocr.ts";

test("a P6 PPM becomes a P5 PGM twice as wide and high, each pixel its inverted luma four times", () => {
  // 2x1: white, then pure red. QEMU's header: "P6\n<w> <h>\n255\n".
  const ppm = Buffer.concat([Buffer.from("P6\n2 1\n255\n", "latin1"), Buffer.from([255, 255, 255, 255, 0, 0])]);
  const pgm = ppmToInvertedDoubledPgm(ppm);
  const header = "P5\n4 2\n255\n";
  assert.equal(pgm.toString("latin1", 0, header.length), header);
  const red = 255 - Math.round(0.299 * 255);
  assert.deepEqual([...pgm.subarray(header.length)], [0, 0, red, red, 0, 0, red, red]);
});

test("what is not a 255-level P6 PPM with all its pixels is an error, not a wrong image", () => {
  assert.throws(() => ppmToInvertedDoubledPgm(Buffer.from("P3\n1 1\n255\n0 0 0\n")), /not a binary PPM/);
  assert.throws(() => ppmToInvertedDoubledPgm(Buffer.from("P6\n1 1\n65535\n\0\0\0\0\0\0", "latin1")), /maxval 65535/);
  assert.throws(() => ppmToInvertedDoubledPgm(Buffer.from("P6\n2 2\n255\n\0\0\0", "latin1")), /a 2x2 PPM with 3 bytes of pixels/);
});
