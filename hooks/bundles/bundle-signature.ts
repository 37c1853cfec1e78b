// Who saved a bundle: an ed25519 signature (node:crypto) over the exact bytes of its
// bundle.json, which holds every file's size and sha256, so the signature covers the whole
// bundle. `bundle.sig` holds it (base64) and the signing key's public half (PEM), which says
// who signed, not whether to trust them: trust comes from the reviving side only, as keys it
// was given (`--trust-key FILE`) and the user's own key.
//
// Every save is signed: with `--sign-key FILE` (a CI job's key), else with the user's own key
// (made on first use in $XDG_CONFIG_HOME/haltpoint, 0600), so that the bundles a user saves
// revive for that user with no flag, and a bundle from anyone else needs `--trust-key` with
// their public key, or `--allow-unsigned`.

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { BundleError, MANIFEST_FILE } from "./bundle-format.ts";

export const SIGNATURE_FILE = "bundle.sig";
const MAX_SIGNATURE_BYTES = 4096;

/** The user's own signing key (private, PEM). */
export function ownKeyFile(): string {
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), ".config"), "haltpoint", "bundle-signing-key.pem");
}

function ownKey(create: boolean): KeyObject | undefined {
  const file = ownKeyFile();
  if (!existsSync(file)) {
    if (!create) return undefined;
    mkdirSync(join(file, ".."), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync("ed25519");
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    renameSync(tmp, file);
  }
  return readKey(file, "private");
}

/** An ed25519 key from a PEM file (a private key's public half is derived); one line naming the file when it is not one. */
export function readKey(file: string, want: "private" | "public"): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (e) {
    throw new BundleError(`${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const key = want === "private" ? createPrivateKey(pem) : pem.includes("PRIVATE KEY") ? createPublicKey(createPrivateKey(pem)) : createPublicKey(pem);
    if (key.asymmetricKeyType !== "ed25519") throw new Error(`a ${key.asymmetricKeyType} key`);
    return key;
  } catch (e) {
    throw new BundleError(`${file}: not an ed25519 ${want} key in PEM (${(e as Error).message.split("\n")[0]}); make one with: openssl genpkey -algorithm ed25519 -out key.pem`);
  }
}

const publicPem = (k: KeyObject): string => (k.type === "private" ? createPublicKey(k) : k).export({ type: "spki", format: "pem" }).toString();

/** A short name for a public key: the first 16 hex digits of its DER's sha256. */
export function fingerprint(k: KeyObject): string {
  const der = (k.type === "private" ? createPublicKey(k) : k).export({ type: "spki", format: "der" });
  return `ed25519:${createHash("sha256").update(der).digest("hex").slice(0, 16)}`;
}

/** Sign the bundle in `dir` (its bundle.json as it is on disk) with `keyFile`, or the user's own key. */
export function signBundle(dir: string, keyFile?: string): string {
  const key = keyFile ? readKey(keyFile, "private") : ownKey(true)!;
  const manifest = readFileSync(join(dir, MANIFEST_FILE));
  const signature = sign(null, manifest, key).toString("base64");
  writeFileSync(join(dir, SIGNATURE_FILE), JSON.stringify({ signature, publicKey: publicPem(key) }, null, 2) + "\n", { mode: 0o600 });
  chmodSync(join(dir, SIGNATURE_FILE), 0o600);
  return fingerprint(key);
}

/** Who signed the bundle, as the reviving side trusts it: a one-line description, or a BundleError saying why it is refused. */
export function checkSignature(dir: string, manifestBytes: Buffer, o: { trustKeys?: string[]; allowUnsigned?: boolean }): string {
  const trusted: Array<{ key: KeyObject; name: string }> = (o.trustKeys ?? []).map((f) => ({ key: readKey(f, "public"), name: f }));
  const own = ownKey(false);
  if (own) trusted.push({ key: createPublicKey(own), name: "your own key" });
  const refuse = (why: string): string => {
    if (o.allowUnsigned) return `${why}: revived anyway (--allow-unsigned)`;
    throw new BundleError(`${why}: give the signer's public key with --trust-key FILE, or revive it anyway with --allow-unsigned`);
  };
  const file = join(dir, SIGNATURE_FILE);
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(file);
  } catch {
    return refuse(`it is not signed (no ${SIGNATURE_FILE})`);
  }
  if (!st.isFile() || st.size > MAX_SIGNATURE_BYTES) return refuse(`${SIGNATURE_FILE} is not a signature file`);
  let sig: Buffer;
  let signer: KeyObject;
  try {
    const v = JSON.parse(readFileSync(file, "utf8")) as { signature?: unknown; publicKey?: unknown };
    if (typeof v.signature !== "string" || typeof v.publicKey !== "string") throw new Error("needs signature and publicKey");
    sig = Buffer.from(v.signature, "base64");
    signer = createPublicKey(v.publicKey);
    if (signer.asymmetricKeyType !== "ed25519") throw new Error("not an ed25519 key");
  } catch (e) {
    return refuse(`${SIGNATURE_FILE} cannot be read (${(e as Error).message.split("\n")[0]})`);
  }
  if (!verify(null, manifestBytes, signer, sig)) return refuse(`its signature does not match its ${MANIFEST_FILE} (changed after it was signed)`);
  const by = trusted.find((t) => t.key.equals(signer));
  if (!by) return refuse(`it is signed by ${fingerprint(signer)}, a key you do not trust`);
  return `signed by ${fingerprint(signer)} (${by.name})`;
}
