// A sample endpoint for the "deliver to your own endpoint" recipe (docs/local.md): what a receiver must do.
// Answers 2xx to accept, 400/415/422 to refuse an event for good (it is quarantined), 401 when the credentials or the
// signature are wrong (the function's credential problem: it re-reads its secrets, retries with backoff, never
// quarantines), 5xx to have it retried later. A bad signature must be 401, not the 400 of many webhook examples: 400
// would quarantine the event during a secret rotation.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { CloudEvent, HTTP } from 'cloudevents';
import { Webhook } from 'standardwebhooks';

const USAGE = `Usage: npx tsx infra/examples/receiver.ts [--port P] [checks]

A CloudEvents endpoint on http://127.0.0.1:P/events (default port 8080; 0 = any free port). It accepts structured
(application/cloudevents+json) and binary (ce-* headers) content mode, parsed with the cloudevents SDK, prints one line
per event and answers 202 (200 for a repeated Idempotency-Key). Not a CloudEvent: 400. Each check you give must pass,
else 401 (the function then retries with backoff; it never quarantines on 401):

  --bearer TOKEN          Authorization: Bearer TOKEN                      (auth kind bearer)
  --basic USER:PASSWORD   Authorization: Basic …                           (auth kind basic)
  --api-key HEADER=VALUE  that header with that value                      (auth kind apiKey)
  --hmac-secret S         X-Signature-256: sha256=<hex HMAC-SHA256 of the body>  (signing scheme x-signature-256)
  --webhook-secret whsec_…  a Standard Webhooks signature by this secret   (signing scheme standard-webhooks;
                          repeat it to accept any of several secrets)
  --help                  this text

Ctrl-C stops it and prints how many distinct events it accepted.`;

/** The receiver cannot start as asked; the message says what to change. */
class ReceiverError extends Error {
  override readonly name = 'ReceiverError';
}

type Check = (req: IncomingMessage, body: Buffer) => string | undefined;

function same(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function header(req: IncomingMessage, name: string): string {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : (value ?? '');
}

function bearer(token: string): Check {
  return (req) => (same(header(req, 'authorization'), `Bearer ${token}`) ? undefined : 'bad bearer token');
}

function basic(userPassword: string): Check {
  if (!userPassword.includes(':')) throw new ReceiverError(`--basic takes USER:PASSWORD (got no ':')`);
  const expected = `Basic ${Buffer.from(userPassword).toString('base64')}`;
  return (req) => (same(header(req, 'authorization'), expected) ? undefined : 'bad basic credentials');
}

function apiKey(headerValue: string): Check {
  const at = headerValue.indexOf('=');
  if (at < 1) throw new ReceiverError(`--api-key takes HEADER=VALUE, e.g. --api-key X-Api-Key=abc (got no '=')`);
  const [name, value] = [headerValue.slice(0, at), headerValue.slice(at + 1)];
  return (req) => (same(header(req, name), value) ? undefined : `bad ${name}`);
}

function hmac(secret: string): Check {
  return (req, body) => {
    const expected = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    return same(header(req, 'x-signature-256'), expected) ? undefined : 'bad signature';
  };
}

function standardWebhooks(secrets: string[]): Check {
  const webhooks = secrets.map((secret) => {
    try {
      return new Webhook(secret);
    } catch (error) {
      throw new ReceiverError(`--webhook-secret is not a Standard Webhooks secret ('whsec_' + base64): ${error}`);
    }
  });
  const names = ['webhook-id', 'webhook-timestamp', 'webhook-signature'];
  return (req, body) => {
    const headers = Object.fromEntries(names.map((name) => [name, header(req, name)]));
    const ok = webhooks.some((webhook) => {
      try {
        // jsonParse false: a binary-mode body is the event's data, which need not be JSON.
        webhook.verify(body, headers, { jsonParse: false });
        return true;
      } catch {
        return false;
      }
    });
    return ok ? undefined : 'bad webhook-signature';
  };
}

function checksOf(values: ReturnType<typeof options>['values']): { checks: Check[]; names: string[] } {
  const checks: [string, Check | undefined][] = [
    ['bearer', values.bearer === undefined ? undefined : bearer(values.bearer)],
    ['basic', values.basic === undefined ? undefined : basic(values.basic)],
    ['API key', values['api-key'] === undefined ? undefined : apiKey(values['api-key'])],
    ['HMAC', values['hmac-secret'] === undefined ? undefined : hmac(values['hmac-secret'])],
    ['Standard Webhooks signature', values['webhook-secret'] ? standardWebhooks(values['webhook-secret']) : undefined],
  ];
  const given = checks.filter((entry): entry is [string, Check] => entry[1] !== undefined);
  return { checks: given.map(([, check]) => check), names: given.map(([name]) => name) };
}

function options(argv: string[]) {
  return parseArgs({
    args: argv,
    // Refused in main, unquoted: parseArgs's own message would print the stray argument, perhaps a password.
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      bearer: { type: 'string' },
      basic: { type: 'string' },
      'api-key': { type: 'string' },
      'hmac-secret': { type: 'string' },
      'webhook-secret': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

function answer(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain' }).end(`${text}\n`);
}

/** The request as a CloudEvent (either content mode), or why it is not one. */
function cloudEvent(req: IncomingMessage, body: Buffer): { id: string; source: string; type: string } | string {
  const headers = Object.fromEntries(Object.keys(req.headers).map((name) => [name, header(req, name)]));
  try {
    const parsed = HTTP.toEvent({ headers, body: body.toString('utf8') });
    const first = Array.isArray(parsed) ? parsed[0] : parsed;
    if (!first) return 'an empty batch';
    // The constructor validates against the spec: an id, a source, a type, specversion 1.0.
    return new CloudEvent(first);
  } catch (error) {
    return `not a CloudEvent: ${error instanceof Error ? error.message : String(error)}`;
  }
}

function handler(checks: Check[]) {
  // Redeliveries carry the same Idempotency-Key: accept them again (2xx) without doing the work twice.
  const seen = new Set<string>();
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST' || req.url !== '/events') return answer(res, 404, 'POST /events');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    for (const check of checks) {
      const problem = check(req, body);
      if (problem) return answer(res, 401, problem);
    }
    const event = cloudEvent(req, body);
    if (typeof event === 'string') return answer(res, 400, event);
    const key = header(req, 'idempotency-key') || `${event.source}/${event.id}`;
    const duplicate = seen.has(key);
    seen.add(key);
    console.log(`${duplicate ? 'duplicate' : 'accepted '} ${event.source} ${event.id} ${event.type}`);
    answer(res, duplicate ? 200 : 202, 'ok');
  };
  return { handle, seen };
}

function main(argv: string[]): void {
  const { values, positionals } = options(argv);
  const [stray] = positionals;
  if (stray !== undefined) {
    throw new ReceiverError(
      `an argument without a flag (${stray.length} characters, not shown: it may be a secret): --basic takes ` +
        'USER:PASSWORD as one argument; repeat --webhook-secret before each secret',
    );
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const port = Number(values.port ?? 8080);
  if (!/^\d+$/.test(values.port ?? '8080') || port > 65_535) {
    throw new ReceiverError(`--port must be a port number from 0 to 65535 (got '${values.port}')`);
  }
  const { checks, names } = checksOf(values);
  const { handle, seen } = handler(checks);
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => answer(res, 500, String(error)));
  });
  server.on('error', (error: NodeJS.ErrnoException) => {
    const why =
      error.code === 'EADDRINUSE'
        ? `port ${port} on 127.0.0.1 is taken (another receiver, or another program): stop it, or pick another port ` +
          'with --port P (--port 0 takes any free one) and put that URL in ENDPOINTS or your endpoints file'
        : `cannot listen on 127.0.0.1:${port}: ${error.message}`;
    console.error(`receiver: ${why}`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => {
    const { port: bound } = server.address() as AddressInfo;
    const required = names.length > 0 ? ` (${names.join(', ')} required)` : '';
    console.log(`receiver listening on http://127.0.0.1:${bound}/events${required}`);
  });
  process.on('SIGINT', () => {
    console.log(`receiver: ${seen.size} distinct event(s)`);
    server.close(() => process.exit(0));
  });
}

try {
  main(process.argv.slice(2));
} catch (error) {
  // parseArgs's own errors (an unknown flag) and ours: the message, then how to call it.
  console.error(`receiver: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
  process.exit(2);
}
