export declare const SOURCE_DIRS: string[];
export declare const SOURCE_FILES: string[];
/** True when every source .ts under `root` (a directory URL) has a compiled .js in dist/ at least as new. */
export declare function distIsFresh(root: URL): boolean;
