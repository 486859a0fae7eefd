import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { HTTP, type CloudEvent as SdkEvent } from 'cloudevents';
import { Webhook } from 'standardwebhooks';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';

// The done-when of issue 11: endpoints/example.yml, pointed at local receivers that check what they get with
// independent libraries (cloudevents, standardwebhooks, a real OAuth token endpoint), run by `npm start --endpoints`.
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ingest-subs-'));
const servers: http.Server[] = [];
afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  rmSync(dir, { recursive: true, force: true });
});

const SIGNING = ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD'];
const CLIENT_SECRET = 'crm-client-secret-value';

interface Receiver {
  url: string;
  events: SdkEvent<unknown>[];
  refused: number;
}

type Check = (req: http.IncomingMessage, body: Buffer) => boolean;

async function listen(handler: http.RequestListener, path: string): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
}

/** An OAuth 2.0 client credentials token endpoint that insists on the right client secret. */
function tokenEndpoint(issued: string[]): Promise<string> {
  return listen((req, res) => {
    req.resume();
    req.on('end', () => {
      const basic = `Basic ${Buffer.from(`ingest-fanout:${CLIENT_SECRET}`).toString('base64')}`;
      if (req.headers.authorization !== basic) return res.writeHead(401).end('{"error":"invalid_client"}');
      issued.push(`tok-${issued.length + 1}`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: issued.at(-1), token_type: 'Bearer', expires_in: 3600 }));
    });
  }, '/oauth2/token');
}

/** A receiver that checks each request with `check`, then parses it with the cloudevents SDK; 401 if either fails. */
async function receiver(check: Check): Promise<Receiver> {
  const state: Receiver = { url: '', events: [], refused: 0 };
  state.url = await listen((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      let ok = check(req, body);
      if (ok) {
        try {
          state.events.push(HTTP.toEvent({ headers, body: body.toString('utf8') }) as SdkEvent<unknown>);
        } catch {
          ok = false;
        }
      }
      if (!ok) state.refused++;
      res.writeHead(ok ? 204 : 401).end();
    });
  }, '/in');
  return state;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function until(condition: () => boolean, what: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function event(id: string, type: string, source: string, extra: Record<string, unknown> = {}) {
  return { specversion: '1.0', id, type, source, datacontenttype: 'application/json', data: { id }, ...extra };
}

describe('endpoints/example.yml under npm start --endpoints', () => {
  it('routes, shapes, signs and authenticates each endpoint as the file says', async () => {
    const issued: string[] = [];
    const tokenUrl = await tokenEndpoint(issued);
    const orders = await receiver(() => true);
    const audit = await receiver((req, body) => {
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      // Both rotating secrets must verify on their own: a receiver holding either accepts.
      return SIGNING.every((secret) => {
        try {
          new Webhook(secret).verify(body.toString('utf8'), headers);
          return true;
        } catch {
          return false;
        }
      });
    });
    const crm = await receiver((req) => issued.includes(String(req.headers.authorization).replace('Bearer ', '')));

    const stage = parse(readFileSync(join(ROOT, 'endpoints/example.yml'), 'utf8')) as {
      endpoints: Record<string, unknown>[];
    };
    const [o, a, c] = stage.endpoints;
    o!.url = orders.url;
    a!.url = audit.url;
    c!.url = crm.url;
    c!.auth = { ...(c!.auth as object), tokenUrl };
    const file = join(dir, 'example.local.yml');
    writeFileSync(file, stringify(stage));
    const secrets = join(dir, 'secrets.yml');
    writeFileSync(
      secrets,
      stringify({
        ssm: {
          '/ingest-fanout/example/audit-signing-2026-11': SIGNING[0],
          '/ingest-fanout/example/audit-signing-2026-05': SIGNING[1],
        },
        secretsmanager: { 'ingest-fanout/example/crm-client-secret': CLIENT_SECRET },
      }),
    );

    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, LOCAL_SQS_PORT: String(port) };
    for (const key of Object.keys(env)) if (key.startsWith('POWERTOOLS_')) delete env[key];
    delete env.ENDPOINTS;
    // node with tsx's loader, not the tsx CLI: the CLI relays SIGINT a second time when the child is slow to stop,
    // which start.ts takes for a second Ctrl-C (forced exit, 130) on a loaded machine.
    const child: ChildProcess = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'infra/local/start.ts',
        '--endpoints',
        file,
        '--secrets',
        secrets,
        '--log',
        join(dir, 'handler.log'),
      ],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      await until(
        () => /Send events from another terminal/.test(output),
        () => output,
      );
      expect(output).toMatch(/orders {5}http:\/\/127\.0\.0\.1:\d+\/in/);
      const queueUrl = output.match(/queue {6}(\S+)/)![1]!;
      const events = [
        ...[1, 2, 3].map((i) => event(`shop-order-${i}`, 'com.example.order.created', 'urn:example:shop:eu')),
        event('pos-order-1', 'com.example.order.paid', 'urn:example:pos', { subject: 'café 100%' }),
        event('shop-customer-1', 'com.example.customer.updated', 'urn:example:shop:eu'),
        event('sync-1', 'com.example.inventory.synced', 'urn:example:erp'),
      ];
      const sqs = new SQSClient({
        endpoint: `http://127.0.0.1:${port}`,
        region: 'us-east-1',
        credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      });
      await sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: events.map((e, i) => ({ Id: String(i), MessageBody: JSON.stringify(e) })),
        }),
      );
      const ids = (receiver: Receiver) => receiver.events.map((e) => e.id).sort();
      await until(
        () => orders.events.length >= 4 && audit.events.length >= 6 && crm.events.length >= 4,
        () => JSON.stringify({ orders: ids(orders), audit: ids(audit), crm: ids(crm), output: output.slice(-2000) }),
      );
      // orders: type prefix com.example.order.
      expect(ids(orders)).toEqual(['pos-order-1', 'shop-order-1', 'shop-order-2', 'shop-order-3']);
      // orders is in binary mode: the subject arrives percent-encoded in its ce- header.
      const pos = orders.events.find((e) => e.id === 'pos-order-1')!;
      expect(decodeURIComponent(String(pos.subject))).toBe('café 100%');
      expect(pos.data).toEqual({ id: 'pos-order-1' });
      // audit: everything, structured, signed with both secrets.
      expect(ids(audit)).toHaveLength(6);
      expect(audit.refused).toBe(0);
      expect(audit.events.find((e) => e.id === 'pos-order-1')!.subject).toBe('café 100%');
      // crm: source prefix urn:example:shop, with a token from the token endpoint, fetched once.
      expect(ids(crm)).toEqual(['shop-customer-1', 'shop-order-1', 'shop-order-2', 'shop-order-3']);
      expect(crm.refused).toBe(0);
      expect(issued).toEqual(['tok-1']);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);
});
