/** What makes a file a VM test: discovery (main thread) finds them, a worker loads them. */
export const TEST_FILE_RE = /\.vmtest\.(ts|mts|cts|js|mjs|cjs)$/;
