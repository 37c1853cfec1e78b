/** True when every source .ts under `root` (a directory URL) has a compiled .js in dist/ at least as new. */
export declare function distIsFresh(root: URL): boolean;
