import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { envWithoutAws, ROOT, runScript } from '../support/cli';

// The "deliver to your own endpoint" recipe of docs/local.md, as a user runs it.
const TSX = join(ROOT, 'node_modules/.bin/tsx');
const logs = mkdtempSync(join(tmpdir(), 'ingest-receiver-'));
const running: ChildProcess[] = [];
afterEach(() => {
  for (const child of running.splice(0)) child.kill('SIGKILL');
});
afterAll(() => rmSync(logs, { recursive: true, force: true }));

/** Starts infra/examples/receiver.ts on a free loopback port; resolves with its URL and its output so far. */
async function startReceiver(args: string[] = []): Promise<{ url: string; output: () => string }> {
  const child = spawn(TSX, ['infra/examples/receiver.ts', '--port', '0', ...args], { cwd: ROOT });
  running.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', () => {
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+\/events)/.exec(output);
      if (match) resolve(match[1]!);
    });
    child.on('exit', (code) => reject(new Error(`receiver exited with ${code}: ${output}`)));
  });
  return { url, output: () => output };
}

describe('sample receiver (docs/local.md: deliver to your own endpoint)', () => {
  it('npm run demo with ENDPOINTS pointing at it delivers every event there once or more, and drains', async () => {
    const receiver = await startReceiver();
    const demo = await runScript(
      'infra/local/demo.ts',
      ['--events', '20', '--invalid', '2', '--log', join(logs, 'demo.log')],
      envWithoutAws({ ENDPOINTS: `mine=${receiver.url}` }),
    );
    expect(demo.code).toBe(0);
    expect(demo.stdout).toMatch(/lost {10}0/);
    const accepted = new Set(receiver.output().match(/^accepted +\S+ (\S+)/gm));
    expect(accepted.size).toBe(20);
  }, 120_000);

  it('with --hmac-secret, refuses a wrong signature with 401 and accepts the right one', async () => {
    const receiver = await startReceiver(['--hmac-secret', 's3cret']);
    const body = JSON.stringify({ specversion: '1.0', id: 'h-1', source: 'urn:test', type: 't' });
    const post = (signature: string) =>
      fetch(receiver.url, {
        method: 'POST',
        headers: { 'content-type': 'application/cloudevents+json; charset=utf-8', 'x-signature-256': signature },
        body,
      });
    expect((await post('sha256=00')).status).toBe(401);
    const good = `sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`;
    expect((await post(good)).status).toBe(202);
    expect((await post(good)).status).toBe(200);
  });

  it('with --webhook-secret, refuses a wrong Standard Webhooks signature with 401, never 400', async () => {
    const key = Buffer.alloc(24, 7).toString('base64');
    const receiver = await startReceiver(['--webhook-secret', `whsec_${key}`]);
    const body = JSON.stringify({ specversion: '1.0', id: 'w-1', source: 'urn:test', type: 't' });
    const post = (secret: string) => {
      const timestamp = new Date();
      const id = 'msg-w-1';
      const signature = new Webhook(secret).sign(id, timestamp, body);
      return fetch(receiver.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/cloudevents+json; charset=utf-8',
          'webhook-id': id,
          'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
          'webhook-signature': signature,
        },
        body,
      });
    };
    expect((await post(`whsec_${Buffer.alloc(24, 8).toString('base64')}`)).status).toBe(401);
    expect((await post(`whsec_${key}`)).status).toBe(202);
  });
});
