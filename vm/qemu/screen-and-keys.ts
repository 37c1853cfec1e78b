import { readFile, rm } from "node:fs/promises";
import { ocrImage, ocrVariants } from "../screen-ocr.ts";
import { charKeys, parseKeyCombo, qmpKeys } from "./keyboard.ts";
import type { QmpClient } from "./qmp.ts";

/** Seconds between two keys of sendChars (NixOS: 0.01). */
const DEFAULT_CHAR_DELAY_S = 0.01;

/** A qemu machine's screen and keyboard: QMP send-key, and OCR of a screendump. */
export class QemuScreenAndKeys {
  constructor(
    private readonly machine: string,
    private readonly qmp: () => QmpClient,
    private readonly log: (msg: string) => void,
  ) {}

  async sendKey(keys: string, delayS = DEFAULT_CHAR_DELAY_S, quiet = false): Promise<void> {
    const codes = parseKeyCombo(keys);
    if (!quiet) this.log(`sending key ${keys}`);
    await this.qmp().execute("send-key", { keys: qmpKeys(codes) });
    if (delayS > 0) await new Promise((r) => setTimeout(r, delayS * 1000));
  }

  async sendChars(text: string, delayS = DEFAULT_CHAR_DELAY_S): Promise<void> {
    if (typeof text !== "string") throw new TypeError(`machine ${this.machine}: sendChars() takes a string`);
    for (const ch of text) charKeys(ch); // every character typable, or nothing is sent
    this.log(`sending keys ${JSON.stringify(text)}`);
    const q = this.qmp();
    for (const ch of text) {
      await q.execute("send-key", { keys: qmpKeys(charKeys(ch)) });
      if (delayS > 0) await new Promise((r) => setTimeout(r, delayS * 1000));
    }
  }

  /** A screendump read by tesseract; the image is removed afterwards. */
  async screenText(fileBase: string): Promise<string> {
    const q = this.qmp();
    // PNG where QEMU writes it, else PPM: tesseract reads either by its content.
    const file = `${fileBase}.img`;
    try {
      await q.screendump(file);
      return await ocrImage(file);
    } finally {
      await rm(file, { force: true });
    }
  }

  /** Several readings of one screendump (screen-ocr.ts ocrVariants); the images are removed afterwards. */
  async screenTextVariants(fileBase: string): Promise<string[]> {
    const file = `${fileBase}.ppm`;
    try {
      await this.qmp().screendump(file, "ppm");
      return await ocrVariants(file, await readFile(file));
    } finally {
      await rm(file, { force: true });
      await rm(`${file}.pgm`, { force: true });
    }
  }
}
