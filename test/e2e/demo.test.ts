import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';

// The commands as a user runs them (`npm start`, `npm run send`, `npm run demo` are these tsx scripts).
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSX = join(ROOT, 'node_modules/.bin/tsx');
const logs = mkdtempSync(join(tmpdir(), 'ingest-local-'));

afterAll(() => rmSync(logs, { recursive: true, force: true }));

/** A user's shell: the suite's quiet Powertools settings removed, so the local stack's own defaults apply. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('POWERTOOLS_')) delete env[key];
  delete env.ENDPOINTS;
  return { ...env, ...extra };
}

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** A port outside the kernel's ephemeral range (32768-60999): port 0 never hands it out, nothing here listens on it. */
const CLOSED_PORT = 9;

/**
 * Runs a local command in its own process group; when the test ends (passed, failed or timed out) whatever is left of
 * the group (tsx and the node process it starts) is killed by its id.
 */
function launch(script: string, args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(TSX, [`infra/local/${script}`, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let exitedYet = false;
  child.on('exit', () => {
    exitedYet = true;
  });
  onTestFinished(() => {
    if (exitedYet || child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // The group is already gone.
    }
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function waitForOutput(running: Running, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = running.output().match(pattern);
    if (match) return match;
    if (Date.now() > deadline) throw new Error(`no ${pattern} in output:\n${running.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('local commands', () => {
  it('npm run demo: drains flaky endpoints, prints the summary and exits 0', async () => {
    const demo = launch(
      'demo.ts',
      ['--events', '60', '--invalid', '5', '--fault-rate', '0.2', '--log', join(logs, 'demo.log')],
      userEnv(),
    );
    expect(await demo.exited).toBe(0);
    const out = demo.output();
    expect(out).toContain('delivered     analytics 60/60 · audit 60/60 · search 60/60');
    expect(out).toMatch(/dead-letter {3}5\/5 malformed \(5 quarantined by the handler, 0 redriven by SQS\) · 0 valid/);
    expect(out).toMatch(/lost {10}0/);
  }, 60_000);

  it('npm run demo: exits 1 when it cannot drain within the time limit', async () => {
    // Nothing listens on port 9: no event can ever be delivered.
    const demo = launch(
      'demo.ts',
      ['--events', '5', '--invalid', '0', '--time-limit', '2', '--log', join(logs, 'stuck.log')],
      userEnv({ ENDPOINTS: `nowhere=http://127.0.0.1:${CLOSED_PORT}/events` }),
    );
    expect(await demo.exited).toBe(1);
    expect(demo.output()).toContain('NOT drained');
    expect(demo.output()).toContain('could not drain within 2 s');
  }, 60_000);

  it('npm start + npm run send: events flow to the endpoints; SIGINT stops it cleanly', async () => {
    // Port 0: the stack picks a free port itself and prints it (a port closed here and reused could be taken).
    const start = launch('start.ts', ['--port', '0', '--log', join(logs, 'start.log')], userEnv());
    try {
      await waitForOutput(start, /Send events from another terminal/);
      const port = (await waitForOutput(start, /SQS {8}http:\/\/127\.0\.0\.1:(\d+)/))[1]!;
      const env = userEnv({ LOCAL_SQS_PORT: port });

      // send finds the running stack through LOCAL_SQS_PORT, like a second terminal would.
      const send = launch('send.ts', ['--count', '30', '--invalid', '3'], env);
      expect(await send.exited).toBe(0);
      expect(send.output()).toContain(`sent 30 CloudEvent(s) and 3 malformed message(s) to http://127.0.0.1:${port}/`);

      await waitForOutput(start, /acknowledged=33 .*analytics=30\(\+\d+dup\) audit=30\(\+\d+dup\) search=30/);
      start.child.kill('SIGINT');
      expect(await start.exited).toBe(0);
      expect(start.output()).toContain('stopping: waiting for running invocations');
      expect(start.output()).toMatch(/dlq=3 .*quarantined=3/);
      expect(start.output()).toContain('stopped');
    } finally {
      start.child.kill('SIGKILL');
    }
  }, 60_000);

  it('npm run send explains what to do when no local stack is running', async () => {
    const send = launch('send.ts', ['--count', '1'], userEnv({ LOCAL_SQS_PORT: String(CLOSED_PORT) }));
    expect(await send.exited).toBe(1);
    expect(send.output()).toContain(
      'start the local stack first (`npm start` in another terminal), or pass --queue-url',
    );
  }, 30_000);
});
