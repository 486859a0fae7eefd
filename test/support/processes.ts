import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
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

/** Members of a process group that are alive (not zombies waiting to be reaped), from /proc. */
function liveMembers(pgid: number): number[] {
  const live: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces, so read after its ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z') live.push(Number(entry));
    } catch {
      // Gone while reading.
    }
  }
  return live;
}

/**
 * Process groups started by `launch` that still have a live member once their tests have ended (a killed process
 * takes a moment to go: it is looked for until then, at most 5 s).
 */
export async function stillRunning(): Promise<number[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const left = launched.filter((pgid) => liveMembers(pgid).length > 0);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
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

/** A user's shell: the suite's quiet Powertools settings and ENDPOINTS removed, so the local stack's defaults apply. */
export function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('POWERTOOLS_')) delete env[key];
  delete env.ENDPOINTS;
  return { ...env, ...extra };
}

/** A port outside the kernel's ephemeral range (32768-60999): port 0 never hands it out, nothing here listens on it. */
export const CLOSED_PORT = 9;

/** A local command (infra/local/<script>) as its npm script runs it. */
export const runLocal = (script: string, args: string[], env: NodeJS.ProcessEnv): Running =>
  launch(`infra/local/${script}`, args, env);
