import { createHmac } from 'node:crypto';
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { listenForTest, type ReceivedRequest, testEndpoint } from '../../support/endpoints';
import { subscriberFor, validEvent } from '../../support/subscriptions';

const context = () => ({ signal: new AbortController().signal, deadlineAt: Date.now() + 60_000 });

describe('Subscriber', () => {
  it('routes on the parsed event: its filter decides, the event body is not read again', () => {
    const sub = subscriberFor('https://sink.example.com/in', {
      filter: { type: { prefix: 'com.example.order.' }, extensions: { tenant: 'acme' } },
    });
    expect(sub.routes(validEvent('e-1', { tenant: 'acme' }))).toBe(true);
    expect(sub.routes(validEvent('e-2', { tenant: 'globex' }))).toBe(false);
    expect(sub.routes(validEvent('e-3', { tenant: 'acme', type: 'com.example.refund.issued' }))).toBe(false);
  });

  it("adds an ENDPOINT_CREDENTIALS credential to the file's static headers (short form and file together)", async () => {
    const sink = await testEndpoint();
    const event = validEvent();
    const result = await subscriberFor(sink.url, { headers: { 'X-Tenant': 'acme' } }).deliver(event, context(), {
      kind: 'hmac',
      secret: 'legacy',
    });
    expect(result).toMatchObject({ ok: true });
    const [request] = sink.received;
    expect(request?.headers['x-tenant']).toBe('acme');
    expect(request?.headers['x-signature-256']).toBe(
      `sha256=${createHmac('sha256', 'legacy').update(event.body).digest('hex')}`,
    );
  });

  it('on a 401/403 reads its secret references again and sends once more with the new value', async () => {
    const sink = await testEndpoint((request) => ({
      status: request.headers.authorization === 'Bearer new' ? 200 : 401,
    }));
    const secrets = new Map([['ssm:/token', 'old']]);
    let reads = 0;
    const result = await subscriberFor(sink.url, { auth: { kind: 'bearer', token: { ssm: '/token' } } }).deliver(
      validEvent(),
      {
        ...context(),
        secrets,
        refreshSecrets: async () => {
          reads++;
          secrets.set('ssm:/token', 'new');
          return true;
        },
      },
    );
    expect(result).toMatchObject({ ok: true, attempts: 2 });
    expect(reads).toBe(1);
    expect(sink.received.map((r) => r.headers.authorization)).toEqual(['Bearer old', 'Bearer new']);
  });

  it('on a 401/403 whose secrets read again are unchanged, does not send again (CREDENTIALS_NOT_REFRESHED)', async () => {
    const sink = await testEndpoint(() => ({ status: 401 }));
    const secrets = new Map([['ssm:/token', 'old']]);
    const result = await subscriberFor(sink.url, { auth: { kind: 'bearer', token: { ssm: '/token' } } }).deliver(
      validEvent(),
      { ...context(), secrets, refreshSecrets: async () => false },
    );
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', error: 'CREDENTIALS_NOT_REFRESHED', attempts: 1 });
    expect(sink.received).toHaveLength(1);
  });

  it('on a 401/403 of an endpoint with no credentials at all, says so (CREDENTIALS_NONE)', async () => {
    const sink = await testEndpoint(() => ({ status: 403 }));
    const result = await subscriberFor(sink.url).deliver(validEvent(), context());
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', error: 'CREDENTIALS_NONE' });
    expect(sink.received).toHaveLength(1);
  });
});

/** A loopback OAuth token endpoint answering `status` with `body` (JSON) to every request; counts the requests. */
async function tokenEndpoint(status: number, body: object) {
  const forms: URLSearchParams[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    req.on('end', () => {
      forms.push(new URLSearchParams(text));
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  const url = (await listenForTest(server)).replace('/events', '/token');
  return { url, forms };
}

describe('Subscriber: what each setting adds to the request', () => {
  it('plain (shareable between endpoints) only with nothing of its own: no binary, headers, auth or signing', () => {
    const url = 'https://sink.example.com/in';
    expect(subscriberFor(url).plain).toBe(true);
    expect(subscriberFor(url, { contentMode: 'structured', headers: {} }).plain).toBe(true);
    for (const settings of [
      { contentMode: 'binary' as const },
      { headers: { 'X-Tenant': 'acme' } },
      { auth: { kind: 'bearer' as const, token: { ssm: '/t' } } },
      { signing: { scheme: 'x-signature-256' as const, secret: { ssm: '/s' } } },
    ]) {
      expect(subscriberFor(url, settings).plain, JSON.stringify(settings)).toBe(false);
    }
  });

  it('a plain endpoint still sends its ENDPOINT_CREDENTIALS credential', async () => {
    const sink = await testEndpoint();
    const result = await subscriberFor(sink.url).deliver(validEvent(), context(), { kind: 'bearer', token: 'tok' });
    expect(result).toMatchObject({ ok: true });
    expect(sink.received[0]?.headers.authorization).toBe('Bearer tok');
  });

  it('structured with static headers: the event as received, as application/cloudevents+json', async () => {
    const sink = await testEndpoint();
    const event = validEvent();
    await subscriberFor(sink.url, { headers: { 'X-Tenant': 'acme' } }).deliver(event, context());
    const [request] = sink.received;
    expect(request?.headers['content-type']).toBe('application/cloudevents+json; charset=utf-8');
    expect(request?.body.equals(event.body)).toBe(true);
  });

  it('x-signature-256 from the endpoints file: the hex HMAC of the body with the referenced secret', async () => {
    const sink = await testEndpoint();
    const event = validEvent();
    const sub = subscriberFor(sink.url, { signing: { scheme: 'x-signature-256', secret: { ssm: '/sig' } } });
    const result = await sub.deliver(event, { ...context(), secrets: new Map([['ssm:/sig', 'k3y']]) });
    expect(result).toMatchObject({ ok: true });
    expect(sink.received[0]?.headers['x-signature-256']).toBe(
      `sha256=${createHmac('sha256', 'k3y').update(event.body).digest('hex')}`,
    );
  });

  it('source() and submit(): the request fan-out builds once and the callback it gets once', async () => {
    const sink = await testEndpoint();
    const sub = subscriberFor(sink.url, { headers: { 'X-Tenant': 'acme' } });
    const source = sub.source(validEvent(), context());
    const prepared = await source.prepare();
    expect(prepared.headers).toMatchObject({ 'X-Tenant': 'acme', 'content-type': expect.stringContaining('json') });
    const result = await new Promise((resolve) => sub.submit(source, context(), resolve));
    expect(result).toMatchObject({ ok: true });
    expect(sink.received).toHaveLength(1);
  });

  it('a secret reference missing from the batch copy is a wiring bug: thrown at once, naming the field', async () => {
    const sink = await testEndpoint();
    const sub = subscriberFor(sink.url, { auth: { kind: 'bearer', token: { ssm: '/t' } } });
    for (const secrets of [undefined, new Map<string, string>()]) {
      expect(() => sub.deliver(validEvent(), { ...context(), ...(secrets ? { secrets } : {}) })).toThrow(
        new Error("endpoint 'sink': auth.token was not read at cold start"),
      );
    }
    expect(sink.received).toHaveLength(0);
  });

  it('a Standard Webhooks secret rotated in place to a malformed value: not sent, the field named, never the value', async () => {
    const sink = await testEndpoint();
    const sub = subscriberFor(sink.url, { signing: { scheme: 'standard-webhooks', secrets: [{ ssm: '/s' }] } });
    const result = await sub.deliver(validEvent(), { ...context(), secrets: new Map([['ssm:/s', 'not-a-whsec!']]) });
    // Our configuration's trouble, not the endpoint's: unauthorized (read again once, backed off), breaker untouched.
    expect(result).toMatchObject({
      ok: false,
      kind: 'unauthorized',
      error: 'SIGNING_SECRET_INVALID signing.secrets[0] (ssm:/s)',
    });
    expect(JSON.stringify(result)).not.toContain('not-a-whsec!');
    expect(sink.received).toHaveLength(0);
  });
});

describe('Subscriber: renewing an ENDPOINT_CREDENTIALS credential after a 401', () => {
  const refusingAllBut = (accepted: string) => (request: ReceivedRequest) => ({
    status: request.headers.authorization === accepted ? 200 : 401,
  });

  it('sends once more with the credential read again', async () => {
    const sink = await testEndpoint(refusingAllBut('Bearer new'));
    let reads = 0;
    const result = await subscriberFor(sink.url).deliver(
      validEvent(),
      {
        ...context(),
        refreshCredential: async () => {
          reads++;
          return { kind: 'bearer', token: 'new' };
        },
      },
      { kind: 'bearer', token: 'old' },
    );
    expect(result).toMatchObject({ ok: true, attempts: 2 });
    expect(reads).toBe(1);
    expect(sink.received.map((r) => r.headers.authorization)).toEqual(['Bearer old', 'Bearer new']);
  });

  it('does not send again when the credential read again is the same (and there are no secret references)', async () => {
    const sink = await testEndpoint(() => ({ status: 401 }));
    const result = await subscriberFor(sink.url).deliver(
      validEvent(),
      { ...context(), refreshCredential: async () => undefined, refreshSecrets: async () => true },
      { kind: 'bearer', token: 'old' },
    );
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', error: 'CREDENTIALS_NOT_REFRESHED' });
    expect(sink.received).toHaveLength(1);
  });

  it('without any credential, reads nothing and says so (CREDENTIALS_NONE), even with refreshers wired', async () => {
    const sink = await testEndpoint(() => ({ status: 401 }));
    let reads = 0;
    const count = async () => {
      reads++;
      return undefined;
    };
    // Plain, and with static headers only (not plain: its request is built by the shaper).
    for (const settings of [{}, { headers: { 'X-Tenant': 'acme' } }]) {
      const result = await subscriberFor(sink.url, settings).deliver(validEvent(), {
        ...context(),
        refreshCredential: count,
        refreshSecrets: async () => {
          reads++;
          return true;
        },
      });
      expect(result).toMatchObject({ ok: false, kind: 'unauthorized', error: 'CREDENTIALS_NONE' });
    }
    expect(reads).toBe(0);
  });

  it('secret references only: reads the secrets, never the ENDPOINT_CREDENTIALS credential it does not have', async () => {
    const sink = await testEndpoint(refusingAllBut('Bearer new'));
    const secrets = new Map([['ssm:/t', 'old']]);
    let credentialReads = 0;
    const result = await subscriberFor(sink.url, { auth: { kind: 'bearer', token: { ssm: '/t' } } }).deliver(
      validEvent(),
      {
        ...context(),
        secrets,
        refreshCredential: async () => {
          credentialReads++;
          return { kind: 'bearer', token: 'other' };
        },
        refreshSecrets: async () => {
          secrets.set('ssm:/t', 'new');
          return true;
        },
      },
    );
    expect(result).toMatchObject({ ok: true, attempts: 2 });
    expect(credentialReads).toBe(0);
  });
});

describe('Subscriber: OAuth client credentials, as the request sees the token endpoint', () => {
  const oauth = (tokenUrl: string) => ({
    auth: {
      kind: 'oauth2-client-credentials' as const,
      tokenUrl,
      clientId: 'ingest',
      clientSecret: { ssm: '/c' },
      scope: 'events.write',
    },
  });
  const withSecret = () => ({ ...context(), secrets: new Map([['ssm:/c', 'cs']]) });

  it('asks for the scope and sends the token', async () => {
    const sink = await testEndpoint();
    const token = await tokenEndpoint(200, { access_token: 'tok-1', token_type: 'Bearer', expires_in: 3600 });
    expect(await subscriberFor(sink.url, oauth(token.url)).deliver(validEvent(), withSecret())).toMatchObject({
      ok: true,
    });
    expect(token.forms[0]?.get('scope')).toBe('events.write');
    expect(sink.received[0]?.headers.authorization).toBe('Bearer tok-1');
  });

  it('a token endpoint refusing the client (400 or 401) is a refusal of our credentials, not a failure of the endpoint', async () => {
    for (const status of [400, 401]) {
      const sink = await testEndpoint();
      const token = await tokenEndpoint(status, { error: 'invalid_client' });
      const result = await subscriberFor(sink.url, oauth(token.url)).deliver(validEvent(), withSecret());
      expect(result, String(status)).toMatchObject({ ok: false, kind: 'unauthorized' });
      expect(sink.received).toHaveLength(0);
    }
  });

  it('a token endpoint failing otherwise (500) is transient', async () => {
    const sink = await testEndpoint();
    const token = await tokenEndpoint(500, { error: 'server_error' });
    const result = await subscriberFor(sink.url, oauth(token.url)).deliver(validEvent(), withSecret());
    expect(result).toMatchObject({ ok: false, kind: 'transient' });
  });

  it('a token HTTP cannot carry (a line break) is an unusable answer of the token endpoint, never sent', async () => {
    const sink = await testEndpoint();
    const token = await tokenEndpoint(200, { access_token: 'tok\n1', token_type: 'Bearer', expires_in: 3600 });
    const result = await subscriberFor(sink.url, oauth(token.url)).deliver(validEvent(), withSecret());
    // Not INVALID_HEADER_VALUE: its hint blames a stored secret, and the token would be kept for its lifetime.
    expect(result).toMatchObject({
      ok: false,
      kind: 'transient',
      error: expect.stringMatching(/answered an access_token that cannot be sent in an Authorization header$/),
    });
    expect(JSON.stringify(result)).not.toContain('tok\\n1');
    expect(sink.received).toHaveLength(0);
  });
});
