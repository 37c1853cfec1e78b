import type { Failure } from "../common/failure-kinds.ts";
import { reasonOf } from "./results.ts";

// What a failure "is", independent of the run it happened in: the failing command or
// error message with the parts that differ from run to run (numbers, paths, hex ids)
// replaced by placeholders, so that failures with one cause fall into one group.

const UUID = /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi;
const HEX_PREFIXED = /\b0x[0-9a-f]+\b/gi;
/** Bare hex ids (git hashes, container and machine ids): at least one digit and one letter a-f. */
const HEX_BARE = /\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b/gi;
/** Absolute, home-relative, dot-relative paths and file: URLs, where a path can start. */
const PATH = /(?<=^|[\s'"`(=[<,:])(?:file:\/\/)?(?:~|\.{1,2})?\/[\w.@%+~\-/#]+/g;
const NUMBER = /\d+(?:\.\d+)?/g;

/** Normalise one line of a failure message (see the module comment). */
export function normalizeMessage(line: string): string {
  return line
    .replace(UUID, "<uuid>")
    .replace(HEX_PREFIXED, "<hex>")
    .replace(PATH, "<path>")
    .replace(HEX_BARE, "<hex>")
    .replace(NUMBER, "N")
    .replace(/\s+/g, " ")
    .trim();
}

/**
 * The signature of one failed attempt: its first line (the orchestrator's reason — a
 * timeout, a crash — or else the script's error message), normalised. Later lines (stack
 * traces, console tails) differ between runs of one cause and are left out.
 */
export function failureSignature(f: { failure?: Failure; reason?: string; error?: { name?: string; message: string } }): string {
  const text = reasonOf(f) ?? f.error?.message ?? "";
  const first = text.split("\n").find((l) => l.trim()) ?? "";
  const sig = normalizeMessage(first);
  return sig || (f.error?.name ? `${f.error.name} (no message)` : "failed (no message)");
}
