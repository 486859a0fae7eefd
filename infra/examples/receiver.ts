// A sample endpoint for the "deliver to your own endpoint" recipe (docs/local.md): what a receiver must do.
//   npx tsx infra/examples/receiver.ts [--port 8080] [--hmac-secret S] [--webhook-secret whsec_...]
// Answers 2xx to accept, 400/415/422 to refuse an event for good (it is quarantined), 401 when the signature is wrong
// (the function's credential problem: it re-reads its secrets, retries with backoff, never quarantines), 5xx to have
// it retried later. A bad signature must be 401, not the 400 of many webhook examples: 400 would quarantine the event
// during a secret rotation.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Webhook } from 'standardwebhooks';

const { values } = parseArgs({
  options: { port: { type: 'string' }, 'hmac-secret': { type: 'string' }, 'webhook-secret': { type: 'string' } },
});
const secret = values['hmac-secret'];
const webhook = values['webhook-secret'] ? new Webhook(values['webhook-secret']) : undefined;
// Redeliveries carry the same Idempotency-Key: accept them again (2xx) without doing the work twice.
const seen = new Set<string>();

function signatureOk(body: Buffer, header: string | undefined): boolean {
  if (!secret) return true;
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function standardWebhookOk(body: Buffer, req: IncomingMessage): boolean {
  if (!webhook) return true;
  const header = (name: string) => String(req.headers[name] ?? '');
  const names = ['webhook-id', 'webhook-timestamp', 'webhook-signature'];
  try {
    webhook.verify(body, Object.fromEntries(names.map((name) => [name, header(name)])));
    return true;
  } catch {
    return false;
  }
}

function answer(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain' }).end(`${text}\n`);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'POST' || req.url !== '/events') return answer(res, 404, 'POST /events');
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  if (!signatureOk(body, req.headers['x-signature-256'] as string | undefined))
    return answer(res, 401, 'bad signature');
  if (!standardWebhookOk(body, req)) return answer(res, 401, 'bad webhook-signature');
  if (!String(req.headers['content-type']).startsWith('application/cloudevents+json')) {
    return answer(res, 415, 'expected application/cloudevents+json');
  }
  let event: { id?: unknown; source?: unknown; type?: unknown };
  try {
    event = JSON.parse(body.toString('utf8'));
  } catch {
    return answer(res, 400, 'not JSON');
  }
  if (typeof event.id !== 'string' || typeof event.source !== 'string') return answer(res, 422, 'no id or source');
  const key = String(req.headers['idempotency-key'] ?? `${event.source}/${event.id}`);
  const duplicate = seen.has(key);
  seen.add(key);
  console.log(`${duplicate ? 'duplicate' : 'accepted '} ${event.source} ${event.id} ${String(event.type)}`);
  answer(res, duplicate ? 200 : 202, 'ok');
}

const server = createServer((req, res) => {
  handle(req, res).catch((error: unknown) => answer(res, 500, String(error)));
});
server.listen(Number(values.port ?? 8080), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  const required = [secret ? 'HMAC' : '', webhook ? 'Standard Webhooks signature' : ''].filter(Boolean).join(', ');
  console.log(`receiver listening on http://127.0.0.1:${port}/events${required ? ` (${required} required)` : ''}`);
});
process.on('SIGINT', () => {
  console.log(`receiver: ${seen.size} distinct event(s)`);
  server.close(() => process.exit(0));
});
