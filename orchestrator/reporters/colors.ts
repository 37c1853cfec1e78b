import pc from "picocolors";

type Env = Record<string, string | undefined>;

/**
 * Colour or not: NO_COLOR (any non-empty value) wins; FORCE_COLOR forces it; CI logs that
 * render ANSI colour (GitHub Actions, GitLab, Buildkite) get it; otherwise only a terminal
 * (a TTY whose TERM is not "dumb"). picocolors alone would colour any output once CI is set,
 * pipes and files included.
 */
export function colorEnabled(stream: { isTTY?: boolean }, env: Env = process.env): boolean {
  if (env.NO_COLOR) return false;
  if (env.FORCE_COLOR) return env.FORCE_COLOR !== "0" && env.FORCE_COLOR !== "false";
  if (env.GITHUB_ACTIONS === "true" || env.GITLAB_CI === "true" || env.BUILDKITE === "true") return true;
  return Boolean(stream.isTTY) && env.TERM !== "dumb";
}

export type Colors = ReturnType<typeof pc.createColors>;

/** The colours of haltpoint's terminal output (stdout). */
export const colors: Colors = pc.createColors(colorEnabled(process.stdout));
