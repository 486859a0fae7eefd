import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HTTP, CloudEvent as SdkEvent } from 'cloudevents';
import { Webhook } from 'standardwebhooks';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { parse, stringify } from 'yaml';
import { envWithoutAws } from '../support/cli';
import { launch, type Running, stillRunning, waitForOutput } from '../support/processes';

// The "deliver to your own endpoint" recipe of docs/local.md, as a user runs it.
const logs = mkdtempSync(join(tmpdir(), 'ingest-receiver-'));
afterAll(async () => {
  rmSync(logs, { recursive: true, force: true });
  // Every process a test started has ended with it (on a shared machine, leftovers pile up).
  expect(await stillRunning()).toEqual([]);
});

const RECEIVER = 'infra/examples/receiver.ts';
const WHSEC = `whsec_${Buffer.alloc(24, 7).toString('base64')}`;

/** Starts the receiver on a free loopback port; resolves with its URL (it is killed when the test ends). */
async function startReceiver(args: string[] = []): Promise<{ url: string; running: Running }> {
  const running = launch(RECEIVER, ['--port', '0', ...args], envWithoutAws());
  const match = await Promise.race([
    waitForOutput(running, /listening on (http:\/\/127\.0\.0\.1:\d+\/events)/),
    running.exited.then((code) => {
      throw new Error(`receiver exited with ${code}: ${running.output()}`);
    }),
  ]);
  return { url: match[1]!, running };
}

const sample = new SdkEvent({ id: 'r-1', source: 'urn:test', type: 't', data: { n: 1 } });

function post(url: string, mode: 'structured' | 'binary', headers: Record<string, string> = {}, body?: string) {
  const message = mode === 'binary' ? HTTP.binary(sample) : HTTP.structured(sample);
  const text = body ?? String(message.body);
  return fetch(url, {
    method: 'POST',
    headers: { ...(message.headers as Record<string, string>), ...headers },
    body: text,
  });
}

function standardWebhookHeaders(secret: string, body: string): Record<string, string> {
  const timestamp = new Date();
  return {
    'webhook-id': 'msg-1',
    'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign('msg-1', timestamp, body),
  };
}

describe('sample receiver (docs/local.md: deliver to your own endpoint)', () => {
  it('npm run demo with ENDPOINTS pointing at it delivers every event there once or more, and drains', async () => {
    const receiver = await startReceiver();
    const demo = launch(
      'infra/local/demo.ts',
      ['--events', '20', '--invalid', '2', '--log', join(logs, 'demo.log')],
      envWithoutAws({ ENDPOINTS: `mine=${receiver.url}` }),
    );
    expect(await demo.exited).toBe(0);
    expect(demo.output()).toMatch(/lost {10}0/);
    const accepted = new Set(receiver.running.output().match(/^accepted +\S+ (\S+)/gm));
    expect(accepted.size).toBe(20);
  }, 120_000);

  it("takes endpoints/example.yml's orders (binary) and audit (structured, Standard Webhooks during a rotation): the demo loses nothing", async () => {
    const [orders, audit] = await Promise.all([startReceiver(), startReceiver(['--webhook-secret', WHSEC])]);
    // The example's own entries, only pointed at the receivers: what the file says is what is exercised.
    type Entry = { name: string; url: string; contentMode?: string; signing?: { secrets: { ssm: string }[] } };
    const example = parse(readFileSync('endpoints/example.yml', 'utf8')) as { endpoints: Entry[] };
    const urls = new Map([
      ['orders', orders.url],
      ['audit', audit.url],
    ]);
    const endpoints = example.endpoints.filter((e) => urls.has(e.name)).map((e) => ({ ...e, url: urls.get(e.name) }));
    expect(endpoints.map((e) => [e.name, e.contentMode])).toEqual([
      ['orders', 'binary'],
      ['audit', undefined],
    ]);
    const [newest, oldest] = endpoints[1]!.signing!.secrets.map((ref) => ref.ssm);
    const file = join(logs, 'example.yml');
    const secrets = join(logs, 'example-secrets.yml');
    writeFileSync(file, stringify({ endpoints }));
    // The receiver holds the newest secret only; the oldest, still listed, signs too.
    const old = `whsec_${Buffer.alloc(24, 9).toString('base64')}`;
    writeFileSync(secrets, stringify({ ssm: { [newest!]: WHSEC, [oldest!]: old } }));
    const demo = launch(
      'infra/local/demo.ts',
      ['--events', '10', '--invalid', '1', '--endpoints', file, '--secrets', secrets, '--log', join(logs, 'ex.log')],
      envWithoutAws(),
    );
    expect(await demo.exited).toBe(0);
    expect(demo.output()).toMatch(/lost {10}0/);
    const accepted = (running: Running) => [...running.output().matchAll(/^accepted +\S+ (\S+) (\S+)/gm)];
    const audited = accepted(audit.running);
    expect(new Set(audited.map(([, id]) => id)).size).toBe(10);
    // orders takes the order events only (its type filter), every one of them.
    const orderIds = audited.filter(([, , type]) => type!.startsWith('com.example.order.')).map(([, id]) => id);
    expect(orderIds.length).toBeGreaterThan(0);
    expect(new Set(accepted(orders.running).map(([, id]) => id))).toEqual(new Set(orderIds));
  }, 120_000);

  it('accepts both content modes and refuses what is not a CloudEvent with 400', async () => {
    const { url } = await startReceiver();
    expect((await post(url, 'structured')).status).toBe(202);
    expect((await post(url, 'binary', { 'idempotency-key': 'other' })).status).toBe(202);
    expect((await post(url, 'binary', { 'idempotency-key': 'other' })).status).toBe(200);
    const plain = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(plain.status).toBe(400);
  });

  it('with --hmac-secret, refuses a wrong signature with 401 and accepts the right one', async () => {
    const { url } = await startReceiver(['--hmac-secret', 's3cret']);
    const body = String(HTTP.structured(sample).body);
    expect((await post(url, 'structured', { 'x-signature-256': 'sha256=00' })).status).toBe(401);
    const good = `sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`;
    expect((await post(url, 'structured', { 'x-signature-256': good })).status).toBe(202);
  });

  it('with --webhook-secret, refuses a wrong Standard Webhooks signature with 401 (never 400), in either mode', async () => {
    const { url } = await startReceiver(['--webhook-secret', WHSEC]);
    const wrong = `whsec_${Buffer.alloc(24, 8).toString('base64')}`;
    for (const mode of ['structured', 'binary'] as const) {
      const body = String((mode === 'binary' ? HTTP.binary(sample) : HTTP.structured(sample)).body);
      expect((await post(url, mode, standardWebhookHeaders(wrong, body))).status).toBe(401);
      const key = { 'idempotency-key': mode };
      expect((await post(url, mode, { ...key, ...standardWebhookHeaders(WHSEC, body) })).status).toBe(202);
    }
  });

  it('checks bearer, basic and API key credentials: 401 when wrong or missing', async () => {
    const { url } = await startReceiver(['--bearer', 'tok', '--api-key', 'X-Api-Key=k1']);
    expect((await post(url, 'binary', { 'x-api-key': 'k1' })).status).toBe(401);
    expect((await post(url, 'binary', { authorization: 'Bearer tok', 'x-api-key': 'k2' })).status).toBe(401);
    expect((await post(url, 'binary', { authorization: 'Bearer tok', 'x-api-key': 'k1' })).status).toBe(202);
    const basic = await startReceiver(['--basic', 'ingest:pw']);
    const auth = (user: string) => ({ authorization: `Basic ${Buffer.from(user).toString('base64')}` });
    expect((await post(basic.url, 'structured', auth('ingest:nope'))).status).toBe(401);
    expect((await post(basic.url, 'structured', auth('ingest:pw'))).status).toBe(202);
  });

  it('--help prints what it checks and exits 0', async () => {
    const help = launch(RECEIVER, ['--help'], envWithoutAws());
    expect(await help.exited).toBe(0);
    expect(help.output()).toContain('--webhook-secret');
    expect(help.output()).toContain('--api-key HEADER=VALUE');
  });

  it('a stray argument (a password after a space) is refused without being printed: it may be a secret', async () => {
    const receiver = launch(RECEIVER, ['--port', '0', '--basic', 'ingest', 'pass-word-1'], envWithoutAws());
    expect(await receiver.exited).toBe(2);
    expect(receiver.output()).toContain('an argument without a flag (11 characters, not shown: it may be a secret)');
    expect(receiver.output()).not.toContain('pass-word-1');
  });

  it('says the port is taken and how to pick another, and exits 1', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => taken.close(() => resolve())));
    const port = String((taken.address() as { port: number }).port);
    const receiver = launch(RECEIVER, ['--port', port], envWithoutAws());
    expect(await receiver.exited).toBe(1);
    expect(receiver.output()).toContain(`port ${port} on 127.0.0.1 is taken`);
    expect(receiver.output()).toContain('--port 0');
  });
});
