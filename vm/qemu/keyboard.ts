// Key names for QMP `send-key`: NixOS's `send_key("ctrl-alt-delete")` syntax (keys joined
// by "-", pressed together) mapped to QEMU qcodes, and text mapped to the key presses that
// type it on a US keyboard.

/** Names NixOS tests use that are not QEMU qcodes themselves. */
const ALIASES: Record<string, string> = {
  enter: "ret",
  return: "ret",
  space: "spc",
  del: "delete",
  esc: "esc",
  escape: "esc",
  backspace: "backspace",
  control: "ctrl",
  page_up: "pgup",
  page_down: "pgdn",
};

/** Characters typed without shift. */
const PLAIN: Record<string, string> = {
  "\n": "ret", "\t": "tab", " ": "spc", "-": "minus", "=": "equal", "[": "bracket_left", "]": "bracket_right",
  "\\": "backslash", ";": "semicolon", "'": "apostrophe", "`": "grave_accent", ",": "comma", ".": "dot", "/": "slash",
};

/** Characters typed with shift: the key that carries them. */
const SHIFTED: Record<string, string> = {
  "!": "1", "@": "2", "#": "3", $: "4", "%": "5", "^": "6", "&": "7", "*": "8", "(": "9", ")": "0",
  _: "minus", "+": "equal", "{": "bracket_left", "}": "bracket_right", "|": "backslash", ":": "semicolon",
  '"': "apostrophe", "~": "grave_accent", "<": "comma", ">": "dot", "?": "slash",
};

const QCODE = /^[a-z0-9_]+$/;

/** "ctrl-alt-delete" → ["ctrl", "alt", "delete"]; "shift-a" → ["shift", "a"]; "-" alone is minus. */
export function parseKeyCombo(keys: string): string[] {
  if (typeof keys !== "string" || !keys) throw new TypeError(`sendKey(${JSON.stringify(keys)}): give key names joined by '-', e.g. "ctrl-alt-delete" or "ret"`);
  if (keys.length === 1) return charKeys(keys);
  const parts = keys.split("-").map((k, i, all) => (k === "" && i === all.length - 1 ? "minus" : k));
  return parts.map((p) => {
    const k = p.toLowerCase();
    const q = ALIASES[k] ?? PLAIN[k] ?? k;
    if (!QCODE.test(q)) throw new TypeError(`sendKey(${JSON.stringify(keys)}): '${p}' is not a key name (QEMU qcodes: a, 1, ret, spc, ctrl, alt, shift, f1, delete, …)`);
    return q;
  });
}

/** The keys pressed together to type one character. */
export function charKeys(ch: string): string[] {
  if (/^[a-z0-9]$/.test(ch)) return [ch];
  if (/^[A-Z]$/.test(ch)) return ["shift", ch.toLowerCase()];
  if (PLAIN[ch]) return [PLAIN[ch]];
  if (SHIFTED[ch]) return ["shift", SHIFTED[ch]];
  throw new TypeError(`sendChars: cannot type ${JSON.stringify(ch)} on a US keyboard (use sendKey with a qcode)`);
}

/** The `keys` argument of QMP send-key. */
export function qmpKeys(qcodes: string[]): Array<{ type: "qcode"; data: string }> {
  return qcodes.map((data) => ({ type: "qcode", data }));
}
