import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { HTTP, type CloudEvent as SdkEvent } from 'cloudevents';
import { Webhook } from 'standardwebhooks';
import { CREDENTIAL_MARK } from './scenario';
import {
  type EndpointSecrets,
  type EventShape,
  modelRoutes,
  type SubscriptionSpec,
  type TokenMode,
} from './subscriptions';

/**
 * The loopback OAuth token endpoint of a scenario (client credentials, RFC 6749 section 4.4): it checks the client's
 * Basic credentials and answers a token, a 503, an `invalid_client` 400, or nothing, as the invocation says.
 */
export class TokenServer {
  mode: TokenMode = 'ok';
  /** Every access token issued, by client id. */
  readonly issued = new Map<string, Set<string>>();
  /** When the server last failed a request (Date.now()), if it did. */
  lastFailureAt: number | undefined;
  readonly problems: string[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #server: http.Server;
  #serial = 0;

  private constructor(private readonly clients: ReadonlyMap<string, string>) {
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => this.#answer(req, res, Buffer.concat(chunks).toString('utf8')));
    });
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  /** `clients`: client id → client secret. */
  static async start(clients: ReadonlyMap<string, string>): Promise<TokenServer> {
    const server = new TokenServer(clients);
    await new Promise<void>((resolve) => server.#server.listen(0, '127.0.0.1', resolve));
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/oauth/token`;
  }

  #answer(req: http.IncomingMessage, res: http.ServerResponse, form: string): void {
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const [id, secret] = Buffer.from(basic ?? '', 'base64')
      .toString('utf8')
      .split(':')
      .map((part) => decodeURIComponent(part.replace(/\+/g, ' ')));
    if (new URLSearchParams(form).get('grant_type') !== 'client_credentials' || this.clients.get(id ?? '') !== secret) {
      this.problems.push(`token request for client '${id}' without the grant type or the client secret it was given`);
    }
    if (this.mode !== 'ok') this.lastFailureAt = Date.now();
    if (this.mode === 'hang') return;
    if (this.mode !== 'ok') {
      const status = this.mode === 'fail' ? 503 : 400;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: this.mode === 'fail' ? 'temporarily_unavailable' : 'invalid_client' }));
      return;
    }
    const token = `tok-${++this.#serial}-${CREDENTIAL_MARK}`;
    this.issued.set(id!, (this.issued.get(id!) ?? new Set()).add(token));
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: 3600 }));
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** What a receiver knows of one endpoint: its file entry, the secrets it holds, and who may call it. */
export interface ReceiverSide {
  name: string;
  spec: SubscriptionSpec;
  secrets: EndpointSecrets;
  /** ENDPOINT_CREDENTIALS' bearer token, for an endpoint the file gives no auth. */
  bearer?: string;
}

/** The events of a scenario by idempotency key: their attributes and every message body that carried them. */
export class EventRegistry {
  readonly #events = new Map<string, { shape: EventShape; bodies: Set<string> }>();

  add(key: string, shape: EventShape, body: string): void {
    const known = this.#events.get(key) ?? { shape, bodies: new Set<string>() };
    known.bodies.add(body);
    this.#events.set(key, known);
  }

  get(key: string) {
    return this.#events.get(key);
  }
}

const same = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

function authProblem(side: ReceiverSide, headers: Record<string, string>, tokens: TokenServer): string | undefined {
  const { spec, secrets } = side;
  const authorization = headers.authorization ?? '';
  switch (spec.auth) {
    case 'bearer':
      return same(authorization, `Bearer ${secrets.token}`) ? undefined : 'no bearer token of the endpoints file';
    case 'basic': {
      const pair = Buffer.from(`user-${side.name}:${secrets.password}`).toString('base64');
      return same(authorization, `Basic ${pair}`) ? undefined : 'no Basic credentials of the endpoints file';
    }
    case 'apiKey':
      return same(headers['x-api-key'] ?? '', secrets.apiKey!) ? undefined : 'no X-Api-Key of the endpoints file';
    case 'oauth': {
      const token = /^Bearer (.+)$/.exec(authorization)?.[1] ?? '';
      return tokens.issued.get(`client-${side.name}`)?.has(token) ? undefined : 'no token the token server issued';
    }
    case 'none':
      if (side.bearer === undefined) return authorization ? 'an authorization header it was never given' : undefined;
      return same(authorization, `Bearer ${side.bearer}`) ? undefined : 'no ENDPOINT_CREDENTIALS bearer token';
  }
}

function signingProblem(side: ReceiverSide, headers: Record<string, string>, body: Buffer): string | undefined {
  const { spec, secrets } = side;
  if (spec.signing === 'standard-webhooks') {
    // Every active secret signs: a receiver holding any one of them accepts the request.
    for (const [i, secret] of secrets.signing.entries()) {
      try {
        new Webhook(secret).verify(body, headers, { jsonParse: false });
      } catch (error) {
        return `Standard Webhooks secret ${i} does not verify it (${(error as Error).message})`;
      }
    }
    return headers['webhook-id'] === headers['idempotency-key'] ? undefined : 'webhook-id is not the Idempotency-Key';
  }
  if (spec.signing === 'x-signature-256') {
    const expected = `sha256=${createHmac('sha256', secrets.signing[0]!).update(body).digest('hex')}`;
    return same(headers['x-signature-256'] ?? '', expected) ? undefined : 'x-signature-256 is not the HMAC of the body';
  }
  return headers['webhook-signature'] || headers['x-signature-256'] ? 'a signature it was never configured' : undefined;
}

/** The data the sent event carried, as the bytes a binary-mode body must hold (undefined: no body). */
function dataBytes(original: Record<string, unknown>): Buffer | undefined {
  if (typeof original.data_base64 === 'string') return Buffer.from(original.data_base64, 'base64');
  if (original.data === undefined || original.data === null) return undefined;
  if (typeof original.data === 'string' && original.datacontenttype === 'text/plain') return Buffer.from(original.data);
  return Buffer.from(JSON.stringify(original.data));
}

/** Does the request, read back with the cloudevents SDK, carry this sent event (attributes and data)? */
function carries(sdk: SdkEvent<unknown>, original: Record<string, unknown>, body: Buffer, binary: boolean): boolean {
  const attributes = Object.entries(original).filter(
    ([name, value]) => !['data', 'data_base64'].includes(name) && value !== null,
  );
  const read = sdk as unknown as Record<string, unknown>;
  if (!attributes.every(([name, value]) => String(read[name]) === String(value))) return false;
  const known = new Set([...attributes.map(([name]) => name), 'data', 'data_base64', 'datacontenttype']);
  // The SDK fills in specversion, a time of its own when there is none, and datacontenttype from the Content-Type.
  const filled = new Set(['specversion', 'time']);
  if (Object.keys(read).some((name) => !known.has(name) && read[name] !== undefined && !filled.has(name))) return false;
  if (!binary) return true;
  const expected = dataBytes(original);
  return expected === undefined ? body.length === 0 : expected.equals(body);
}

function contentProblem(
  side: ReceiverSide,
  headers: Record<string, string>,
  body: Buffer,
  bodies: ReadonlySet<string>,
): string | undefined {
  const binary = side.spec.contentMode === 'binary';
  let sdk: SdkEvent<unknown>;
  try {
    const textual = !binary || /json|text/.test(headers['content-type'] ?? 'json');
    const parsed = HTTP.toEvent({ headers, body: textual ? body.toString('utf8') : body });
    if (Array.isArray(parsed)) return 'a batch, not one event';
    sdk = parsed as SdkEvent<unknown>;
  } catch (error) {
    return `the cloudevents SDK cannot read it (${(error as Error).message})`;
  }
  if (!binary) {
    if (!headers['content-type']?.startsWith('application/cloudevents+json')) return 'structured, but not as such';
    return bodies.has(body.toString('utf8')) ? undefined : 'a body that is none of the messages sent';
  }
  if (headers['ce-data_base64'] !== undefined || headers['ce-data'] !== undefined) return 'data sent as a header';
  const originals = [...bodies].map((text) => JSON.parse(text) as Record<string, unknown>);
  return originals.some((original) => carries(sdk, original, body, true))
    ? undefined
    : `binary mode lost or changed an attribute or the data (read back: ${JSON.stringify(sdk).slice(0, 300)})`;
}

/**
 * What is wrong with one request an endpoint received, checked with independent verifiers: it is routed there by
 * the endpoint's filter (the model's reading), carries the event in the endpoint's content mode (the cloudevents SDK),
 * its signature verifies (the standardwebhooks package, an HMAC computed here) and its credentials are the endpoint's.
 */
export function requestProblems(
  side: ReceiverSide,
  registry: EventRegistry,
  tokens: TokenServer,
  key: string,
  rawHeaders: http.IncomingHttpHeaders,
  body: Buffer,
): Array<{ rule: string; detail: string }> {
  const headers = Object.fromEntries(Object.entries(rawHeaders).map(([name, value]) => [name, String(value)]));
  const event = registry.get(key);
  if (!event) return [{ rule: 'I7', detail: `a request with Idempotency-Key ${key.slice(0, 12)}… of no event sent` }];
  const problems: Array<{ rule: string; detail: string }> = [];
  if (!modelRoutes(side.spec.filter, event.shape)) {
    problems.push({
      rule: 'I1-routing',
      detail: `received ${JSON.stringify(event.shape)} though its filter ${JSON.stringify(side.spec.filter)} excludes it`,
    });
  }
  for (const problem of [
    contentProblem(side, headers, body, event.bodies),
    signingProblem(side, headers, body),
    authProblem(side, headers, tokens),
  ]) {
    if (problem) problems.push({ rule: 'I7', detail: problem });
  }
  return problems;
}

/**
 * The token bucket's promise, seen from the endpoint: by any time t, no more requests arrived than the bucket could
 * grant since it was made full at `since` (capacity ⌈rate⌉, then `rate` a second), retries and resends included.
 */
export function rateProblem(name: string, ratePerSecond: number, since: number, arrivals: readonly number[]) {
  const capacity = Math.max(1, Math.ceil(ratePerSecond));
  const index = arrivals.findIndex((at, i) => i + 1 > capacity + ((at - since) / 1000) * ratePerSecond + 1e-6);
  if (index < 0) return undefined;
  const elapsed = Math.round(arrivals[index]! - since);
  return {
    rule: 'I7',
    detail: `${name} received ${index + 1} requests within ${elapsed} ms; rateLimitPerSecond ${ratePerSecond} allows ${capacity} + ${ratePerSecond}/s`,
  };
}
