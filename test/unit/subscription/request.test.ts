import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HTTP, type CloudEvent as SdkEvent } from 'cloudevents';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ValidEvent } from '../../../lib/event/event';
import type { EndpointConfig } from '../../../lib/subscription/schema';
import { type ReceivedRequest, testEndpoint } from '../../support/endpoints';
import { subscriberFor, validEvent } from '../../support/subscriptions';

const never = new AbortController().signal;
// Standard Webhooks secrets as a receiver (Svix-style) generates them: whsec_ + base64 of random bytes.
const OLD = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const NEW = 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD';
const OTHER = 'whsec_plJ3nmyCDGBKInavdOK15jsl5tCqDyQV';

async function send(settings: Partial<EndpointConfig>, event: ValidEvent, secrets = new Map<string, string>()) {
  const sink = await testEndpoint();
  const result = await subscriberFor(sink.url, settings).deliver(event, {
    signal: never,
    deadlineAt: Date.now() + 60_000,
    secrets,
  });
  expect(result).toMatchObject({ ok: true });
  return sink.received[0]!;
}

const valid = (extra: Record<string, unknown> = {}) => validEvent('evt-1', extra);

/** What the official SDK's HTTP binding makes of a request, as a receiver would see it. */
function received(request: ReceivedRequest): SdkEvent<unknown> {
  const headers = Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, String(v)]));
  const binaryBody = !/json|text/.test(headers['content-type'] ?? 'json');
  const parsed = HTTP.toEvent({ headers, body: binaryBody ? request.body : request.body.toString('utf8') });
  if (Array.isArray(parsed)) throw new Error('a batch');
  return parsed as SdkEvent<unknown>;
}

describe('content modes, read back with the cloudevents SDK', () => {
  it('structured (the default): the exact bytes received, as application/cloudevents+json', async () => {
    const event = valid({ tenant: 'acme' });
    const request = await send({}, event);
    expect(request.body.equals(event.body)).toBe(true);
    expect(HTTP.isEvent({ headers: request.headers as Record<string, string>, body: request.body.toString() })).toBe(
      true,
    );
    const sdk = received(request);
    expect(sdk).toMatchObject({ id: 'evt-1', type: 'com.example.order.created', tenant: 'acme' });
    expect(sdk.data).toEqual({ orderId: 'evt-1', total: 42 });
  });

  it('binary: ce- headers for the attributes, the data as the body, Content-Type from datacontenttype', async () => {
    const event = valid({ subject: 'orders/7', tenant: 'acme', priority: 3 });
    const request = await send({ contentMode: 'binary' }, event);
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers['ce-specversion']).toBe('1.0');
    expect(request.headers['idempotency-key']).toBe(event.key);
    expect(JSON.parse(request.body.toString())).toEqual({ orderId: 'evt-1', total: 42 });
    const sdk = received(request);
    expect(sdk).toMatchObject({
      id: 'evt-1',
      source: 'urn:test:orders',
      type: 'com.example.order.created',
      subject: 'orders/7',
      time: '2026-11-25T10:00:00.000Z',
      tenant: 'acme',
      priority: '3',
    });
    expect(sdk.data).toEqual({ orderId: 'evt-1', total: 42 });
  });

  it('binary: data_base64 is sent as the decoded bytes', async () => {
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    const event = valid({
      datacontenttype: 'application/octet-stream',
      data: undefined,
      data_base64: bytes.toString('base64'),
    });
    const request = await send({ contentMode: 'binary' }, event);
    expect(request.headers['content-type']).toBe('application/octet-stream');
    expect(request.body.equals(bytes)).toBe(true);
    expect(received(request).id).toBe('evt-1');
  });

  it('binary: a text/plain string is the body as it is, not a JSON string', async () => {
    const request = await send({ contentMode: 'binary' }, valid({ datacontenttype: 'text/plain', data: 'héllo "x"' }));
    expect(request.body.toString('utf8')).toBe('héllo "x"');
  });

  it('binary: an Integer extension is its header as written, and a filter on its text routes it', async () => {
    const event = valid({ priority: -2147483648, tenant: 'acme' });
    const request = await send({ contentMode: 'binary', filter: { extensions: { priority: '-2147483648' } } }, event);
    expect(request.headers['ce-priority']).toBe('-2147483648');
    expect(
      subscriberFor('https://x.example.com', { filter: { extensions: { priority: '-2147483648' } } }).routes(event),
    ).toBe(true);
  });

  it('binary: header values are percent-encoded as section 3.1.3.2 says, and decode back', async () => {
    const subject = 'café 100% "ok"';
    const request = await send({ contentMode: 'binary' }, valid({ subject }));
    expect(request.headers['ce-subject']).toBe('caf%C3%A9%20100%25%20%22ok%22');
    // The SDK hands the header over undecoded; a receiver following 3.1.3.2 decodes it.
    expect(decodeURIComponent(String(received(request).subject))).toBe(subject);
  });
});

/** A real Node server with a 4 KB header limit: it answers 431 by itself, before any handler runs. */
async function smallHeaderServer(): Promise<string> {
  const server = http.createServer({ maxHeaderSize: 4096 }, (_req, res) => res.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`;
}

describe('headers too large for an endpoint: 431 blames the event only in binary mode', () => {
  it("an endpoint's own 431 (Node's header limit) blames the event: rejected with the status, so it is quarantined", async () => {
    const url = await smallHeaderServer();
    const sub = subscriberFor(url, { contentMode: 'binary' });
    const context = { signal: never, deadlineAt: Date.now() + 60_000 };
    expect(await sub.deliver(valid({ subject: 's'.repeat(100) }), context)).toMatchObject({ ok: true });
    const result = await sub.deliver(valid({ subject: 's'.repeat(5000) }), context);
    expect(result).toMatchObject({ ok: false, kind: 'rejected', status: 431 });
  });

  it('structured mode: a 431 blames our own headers (a large static header), never the event: endpoint-error', async () => {
    const url = await smallHeaderServer();
    const sub = subscriberFor(url, { headers: { 'x-tenant-context': 't'.repeat(5000) } });
    const result = await sub.deliver(valid(), { signal: never, deadlineAt: Date.now() + 60_000 });
    expect(result).toMatchObject({ ok: false, kind: 'endpoint-error', status: 431 });
  });
});

describe('Standard Webhooks signatures, verified with the standardwebhooks package', () => {
  const signing = {
    scheme: 'standard-webhooks' as const,
    secrets: [{ ssm: '/hooks/new' }, { ssm: '/hooks/old' }],
  };
  const secrets = new Map([
    ['ssm:/hooks/new', NEW],
    ['ssm:/hooks/old', OLD],
  ]);
  const headersOf = (request: ReceivedRequest) =>
    Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, String(v)]));

  it('during a rotation both secrets sign: a receiver holding either accepts, one holding neither refuses', async () => {
    {
      const request = await send({ signing }, valid(), secrets);
      const body = request.body.toString('utf8');
      expect(request.headers['webhook-id']).toBe(valid().key);
      expect(String(request.headers['webhook-signature']).split(' ')).toHaveLength(2);
      expect(new Webhook(OLD).verify(body, headersOf(request))).toBeDefined();
      expect(new Webhook(NEW).verify(body, headersOf(request))).toBeDefined();
      expect(() => new Webhook(OTHER).verify(body, headersOf(request))).toThrow(/No matching signature/);
    }
  });

  it('verifies with the library defaults (jsonParse) whatever the data: bytes, text or JSON (structured mode)', async () => {
    const data = [
      { datacontenttype: 'application/octet-stream', data: undefined, data_base64: 'AAH+/w==' },
      { datacontenttype: 'text/plain', data: 'héllo, not JSON' },
      { datacontenttype: 'application/json', data: { n: 1 } },
    ];
    for (const extra of data) {
      const request = await send({ signing }, valid(extra), secrets);
      const verified = new Webhook(NEW).verify(request.body.toString('utf8'), headersOf(request));
      expect(verified).toMatchObject({ id: 'evt-1', ...JSON.parse(JSON.stringify(extra)) });
    }
  });

  it('the signature covers the exact bytes sent: one changed byte fails verification', async () => {
    const request = await send({ signing }, valid(), secrets);
    const tampered = request.body.toString('utf8').replace('"total":42', '"total":43');
    expect(() => new Webhook(NEW).verify(tampered, headersOf(request))).toThrow(/No matching signature/);
  });

  it('a secret rotated in place (same reference, new value) signs at once on a warm instance', async () => {
    const sink = await testEndpoint();
    const sub = subscriberFor(sink.url, { signing: { scheme: 'standard-webhooks', secrets: [{ ssm: '/hooks/one' }] } });
    const live = new Map([['ssm:/hooks/one', OLD]]);
    const context = { signal: never, deadlineAt: Date.now() + 60_000, secrets: live };
    expect(await sub.deliver(valid(), context)).toMatchObject({ ok: true });
    // What a refresh after a 401 does: the same reference now reads the new value.
    live.set('ssm:/hooks/one', NEW);
    expect(await sub.deliver(valid(), context)).toMatchObject({ ok: true });
    const [before, after] = sink.received.map(
      (request) => [request.body.toString('utf8'), headersOf(request)] as const,
    );
    expect(new Webhook(OLD).verify(...before!)).toBeDefined();
    expect(new Webhook(NEW).verify(...after!)).toBeDefined();
    expect(() => new Webhook(OLD).verify(...after!)).toThrow(/No matching signature/);
  });

  it('after the rotation, only the new secret signs', async () => {
    const request = await send({ signing: { ...signing, secrets: [{ ssm: '/hooks/new' }] } }, valid(), secrets);
    const body = request.body.toString('utf8');
    expect(new Webhook(NEW).verify(body, headersOf(request))).toBeDefined();
    expect(() => new Webhook(OLD).verify(body, headersOf(request))).toThrow(/No matching signature/);
  });
});

describe('auth kinds and static headers', () => {
  it('bearer, basic and apiKey from their secret references; static headers as given', async () => {
    const secrets = new Map([
      ['ssm:/t', 'tok-1'],
      ['secretsmanager:pw', 'pä:ss'],
      ['ssm:/k', 'key-1'],
    ]);
    const bearer = await send({ auth: { kind: 'bearer', token: { ssm: '/t' } } }, valid(), secrets);
    expect(bearer.headers.authorization).toBe('Bearer tok-1');
    const basic = await send(
      { auth: { kind: 'basic', username: 'ingest', password: { secretsmanager: 'pw' } } },
      valid(),
      secrets,
    );
    const [scheme, encoded] = String(basic.headers.authorization).split(' ');
    expect(scheme).toBe('Basic');
    expect(Buffer.from(encoded!, 'base64').toString('utf8')).toBe('ingest:pä:ss');
    const apiKey = await send(
      { auth: { kind: 'apiKey', header: 'X-Api-Key', value: { ssm: '/k' } }, headers: { 'X-Tenant': 'acme' } },
      valid(),
      secrets,
    );
    expect(apiKey.headers['x-api-key']).toBe('key-1');
    expect(apiKey.headers['x-tenant']).toBe('acme');
    expect(apiKey.headers.authorization).toBeUndefined();
  });
});

describe('a secret HTTP cannot carry', () => {
  it('a line break in a secret fails as unauthorized, names the header, never the value, and sends nothing', async () => {
    const sink = await testEndpoint();
    const sub = subscriberFor(sink.url, { auth: { kind: 'apiKey', header: 'X-Api-Key', value: { ssm: '/k' } } });
    const result = await sub.deliver(valid(), {
      signal: never,
      deadlineAt: Date.now() + 60_000,
      secrets: new Map([['ssm:/k', 'key-1\n']]),
    });
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', error: 'INVALID_HEADER_VALUE x-api-key' });
    expect(JSON.stringify(result)).not.toContain('key-1');
    expect(sink.received).toHaveLength(0);
  });

  it('with the secrets read again (as deployed) and still the same, keeps its own code, not CREDENTIALS_NOT_REFRESHED', async () => {
    const sink = await testEndpoint();
    const sub = subscriberFor(sink.url, { auth: { kind: 'apiKey', header: 'X-Api-Key', value: { ssm: '/k' } } });
    let reads = 0;
    const result = await sub.deliver(valid(), {
      signal: never,
      deadlineAt: Date.now() + 60_000,
      secrets: new Map([['ssm:/k', 'key-1\n']]),
      refreshSecrets: async () => {
        reads++;
        return false;
      },
    });
    expect(reads).toBe(1);
    // Nothing was sent, so nothing was refused: the 401/403 hint would send on-call to the wrong place.
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', error: 'INVALID_HEADER_VALUE x-api-key' });
    expect(sink.received).toHaveLength(0);
  });

  it('read again and fixed, the delivery goes out with the new value', async () => {
    const sink = await testEndpoint();
    const sub = subscriberFor(sink.url, { auth: { kind: 'apiKey', header: 'X-Api-Key', value: { ssm: '/k' } } });
    const secrets = new Map([['ssm:/k', 'key-1\n']]);
    const result = await sub.deliver(valid(), {
      signal: never,
      deadlineAt: Date.now() + 60_000,
      secrets,
      refreshSecrets: async () => {
        secrets.set('ssm:/k', 'key-1');
        return true;
      },
    });
    expect(result).toMatchObject({ ok: true, attempts: 2 });
    expect(sink.received.map((r) => r.headers['x-api-key'])).toEqual(['key-1']);
  });
});

describe('a Standard Webhooks secret rotated to a malformed value', () => {
  it('fails as our credentials, naming the reference, retried after a read, and leaves the breaker closed', async () => {
    const sink = await testEndpoint();
    const secrets = new Map([['ssm:/sig', 'whsec_not base64!!']]);
    // A breaker that opens on the first transient failure, and retries: a 'transient' classification shows in both.
    const sub = subscriberFor(
      sink.url,
      { signing: { scheme: 'standard-webhooks', secrets: [{ ssm: '/sig' }] } },
      'audit',
      { breakerThreshold: 1, breakerHalfOpenMs: 600_000, maxAttempts: 3 },
    );
    let reads = 0;
    const context = {
      signal: never,
      deadlineAt: Date.now() + 60_000,
      secrets,
      refreshSecrets: async () => {
        reads++;
        return false;
      },
    };
    const result = await sub.deliver(valid(), context);
    expect(result).toMatchObject({
      ok: false,
      kind: 'unauthorized',
      error: 'SIGNING_SECRET_INVALID signing.secrets[0] (ssm:/sig)',
      attempts: 1,
    });
    expect(reads).toBe(1);
    expect(JSON.stringify(result)).not.toContain('not base64');
    expect(sink.received).toHaveLength(0);
    secrets.set('ssm:/sig', NEW);
    expect(await sub.deliver(validEvent('evt-2'), context)).toMatchObject({ ok: true, attempts: 1 });
  });
});
