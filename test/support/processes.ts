import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { onTestFinished } from 'vitest';
import { ROOT } from './cli';

// tsx's loader by absolute URL, so a script also starts from a folder outside the repository (as `npm --prefix` does).
const TSX_LOADER = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

export interface Running {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved as they came. */
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * Runs a TypeScript script as its npm script does (node with tsx's loader) in its own process group; when the test
 * ends (passed, failed or timed out) whatever is left of the group is killed by its id, so no process outlives it.
 */
const launched: number[] = [];

/** Process groups started by `launch` that still have a live member: none once their tests have ended. */
export function stillRunning(): number[] {
  return launched.filter((pgid) => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  });
}

export function launch(script: string, args: string[], env: NodeJS.ProcessEnv, cwd = ROOT): Running {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, join(ROOT, script), ...args], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  if (child.pid !== undefined) launched.push(child.pid);
  onTestFinished(async () => {
    if (child.pid === undefined) return;
    try {
      // The whole group: a wrapper's children too (killing only the tsx CLI left its node child running).
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // The group is already gone.
    }
    await exited;
  });
  let output = '';
  const append = (chunk: Buffer) => {
    output += chunk.toString('utf8');
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return { child, output: () => output, exited };
}

/** Waits until the output matches; fails with the output so far when it does not within the time limit. */
export async function waitForOutput(running: Running, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = running.output().match(pattern);
    if (match) return match;
    if (Date.now() > deadline) throw new Error(`no ${pattern} in output:\n${running.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
