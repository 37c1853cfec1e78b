// `haltpoint image build`: build (or find in the cache) the default guest image and
// print where it is.

import { buildImage, DEFAULT_APPEND } from "./build-image.ts";

export interface ImageBuildCommandOptions {
  cacheDir?: string;
  force?: boolean;
}

/** Progress goes to stderr, the result to stdout. Exit code 0 on success, 2 on failure. */
export async function imageBuildCommand(opts: ImageBuildCommandOptions): Promise<number> {
  const started = Date.now();
  try {
    const image = await buildImage({
      cacheDir: opts.cacheDir,
      force: opts.force,
      log: (line) => process.stderr.write(`haltpoint image: ${line}\n`),
    });
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(`haltpoint image: ${image.reused ? "reused cached image" : `built in ${secs} s`}\n`);
    process.stdout.write(
      [
        `key:     ${image.key}`,
        `dir:     ${image.dir}`,
        `kernel:  ${image.kernel} (${image.kernelVersion})`,
        `initrd:  ${image.initrd}`,
        `append:  ${DEFAULT_APPEND}`,
      ].join("\n") + "\n",
    );
    return 0;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`${msg.startsWith("haltpoint image:") ? msg : `haltpoint image: ${msg}`}\n`);
    return 2;
  }
}
