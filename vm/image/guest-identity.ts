import { readFileSync } from "node:fs";
import { packageFile as shippedFile } from "../../package-root.ts";

/** The hp.* identity part of a guest's startup (hostname, /etc/hosts), shared by haltpoint's
 *  /init and the Debian guests' setup: see the file. */
const GUEST_IDENTITY_SCRIPT = shippedFile("vm/image/guest-identity.sh");

/** `script` with its "# @guest-identity@" line replaced by guest-identity.sh. */
export function withGuestIdentity(script: string): string {
  if (!script.includes("# @guest-identity@\n")) throw new Error("the guest script has no # @guest-identity@ line");
  return script.replace("# @guest-identity@\n", () => readFileSync(GUEST_IDENTITY_SCRIPT, "utf8"));
}
