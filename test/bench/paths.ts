import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository root, with a trailing slash. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Build output and results; git-ignored. */
export const OUT_DIR = `${ROOT}.bench`;
export const BUNDLE_DIR = `${OUT_DIR}/bundle`;

const NODE24 = `${ROOT}node_modules/node24/bin/node`;
/** Lambda's runtime is nodejs24.x: child processes run on Node 24 when its binary is installed, else on this Node. */
export const CHILD_NODE = existsSync(NODE24) ? NODE24 : process.execPath;
