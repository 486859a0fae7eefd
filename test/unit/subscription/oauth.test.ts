import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { ClientCredentialsToken, OAuthTokenError } from '../../../lib/subscription/oauth';
import { RequestShaper } from '../../../lib/subscription/request';
import { listenForTest, testEndpoint } from '../../support/endpoints';
import { subscriberFor, validEvent } from '../../support/subscriptions';

const never = new AbortController().signal;
const SECRET = 's3cr3t/+&';

interface TokenRequest {
  authorization: string;
  form: URLSearchParams;
}

/** A real OAuth 2.0 token endpoint on loopback: issues tok-1, tok-2, ... to the right client, 401 otherwise. */
async function tokenServer(expiresIn = 3600, beforeAnswer = () => {}) {
  const requests: TokenRequest[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      const authorization = String(req.headers.authorization);
      beforeAnswer();
      requests.push({ authorization, form: new URLSearchParams(body) });
      const expected = `Basic ${Buffer.from(`ingest:${encodeURIComponent(SECRET)}`).toString('base64')}`;
      res.writeHead(authorization === expected ? 200 : 401, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          authorization === expected
            ? { access_token: `tok-${requests.length}`, token_type: 'Bearer', expires_in: expiresIn }
            : { error: 'invalid_client' },
        ),
      );
    });
  });
  const url = (await listenForTest(server)).replace('/events', '/oauth2/token');
  return { url: new URL(url), requests };
}

const valid = (id = 'evt-1') => validEvent(id);

const tokenSource = (tokenUrl: URL, now?: () => number) =>
  new ClientCredentialsToken({
    endpoint: 'crm',
    tokenUrl,
    clientId: 'ingest',
    timeoutMs: 5000,
    ...(now ? { now } : {}),
  });

describe('ClientCredentialsToken', () => {
  it('asks the token endpoint once with HTTP Basic client credentials and the scope, then reuses the token', async () => {
    const tokens = await tokenServer();
    const source = new ClientCredentialsToken({
      endpoint: 'crm',
      tokenUrl: tokens.url,
      clientId: 'ingest',
      scope: 'events.write',
      timeoutMs: 5000,
    });
    const [a, b] = await Promise.all([source.get(SECRET, never), source.get(SECRET, never)]);
    expect([a, b, await source.get(SECRET, never)]).toEqual(['tok-1', 'tok-1', 'tok-1']);
    expect(tokens.requests).toHaveLength(1);
    expect(tokens.requests[0]?.form.get('grant_type')).toBe('client_credentials');
    expect(tokens.requests[0]?.form.get('scope')).toBe('events.write');
  });

  it('renews a token shortly before it expires', async () => {
    const tokens = await tokenServer(120);
    let now = 1_000_000;
    const source = tokenSource(tokens.url, () => now);
    expect(await source.get(SECRET, never)).toBe('tok-1');
    now += 107_000;
    expect(await source.get(SECRET, never)).toBe('tok-1');
    // Renewed 60 s early, or at 90% of a lifetime shorter than 10 minutes: 108 s for this one.
    now += 2_000;
    expect(await source.get(SECRET, never)).toBe('tok-2');
  });

  it('drops a token an endpoint refused, once, however many requests report it', async () => {
    const tokens = await tokenServer();
    const source = tokenSource(tokens.url);
    await source.get(SECRET, never);
    const renewed = await Promise.all([source.get(SECRET, never, 'tok-1'), source.get(SECRET, never, 'tok-1')]);
    expect(renewed).toEqual(['tok-2', 'tok-2']);
    expect(await source.get(SECRET, never, 'tok-1')).toBe('tok-2');
    expect(tokens.requests).toHaveLength(2);
  });

  it('after an old and a fresh token were both refused, asks for no new one for a minute, then tries one more', async () => {
    const tokens = await tokenServer();
    let now = 1_000_000;
    const source = tokenSource(tokens.url, () => now);
    expect(await source.get(SECRET, never)).toBe('tok-1');
    expect(await source.get(SECRET, never, 'tok-1')).toBe('tok-2');
    expect(await source.get(SECRET, never, 'tok-2')).toBe('tok-2');
    now += 59_000;
    expect(await source.get(SECRET, never, 'tok-2')).toBe('tok-2');
    expect(tokens.requests).toHaveLength(2);
    now += 1_000;
    expect(await source.get(SECRET, never, 'tok-2')).toBe('tok-3');
  });

  it('a token endpoint that is down is asked again after 5 s, or at once with another client secret', async () => {
    const down = await testEndpoint(() => ({ status: 503 }));
    let now = 1_000_000;
    const source = tokenSource(new URL(down.url), () => now);
    for (let i = 0; i < 3; i++) {
      await expect(Promise.resolve(source.get(SECRET, never))).rejects.toThrow(/answered 503/);
    }
    expect(down.received).toHaveLength(1);
    await expect(Promise.resolve(source.get('rotated', never))).rejects.toThrow(/answered 503/);
    expect(down.received).toHaveLength(2);
    now += 5_000;
    await expect(Promise.resolve(source.get(SECRET, never))).rejects.toThrow(/answered 503/);
    expect(down.received).toHaveLength(3);
  });

  it('a refused client is an OAuthTokenError naming the endpoint and the token URL, never the secret', async () => {
    const tokens = await tokenServer();
    const source = tokenSource(tokens.url);
    const error = await Promise.resolve(source.get('wrong-secret', never)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OAuthTokenError);
    expect((error as Error).message).toMatch(
      /OAuth token endpoint http:\/\/127\.0\.0\.1:\d+\/oauth2\/token answered 401/,
    );
    expect((error as Error).message).not.toContain('wrong-secret');
  });
});

describe('an endpoint behind OAuth client credentials', () => {
  const subscriber = (sinkUrl: string, tokenUrl: URL) =>
    subscriberFor(
      sinkUrl,
      {
        auth: {
          kind: 'oauth2-client-credentials',
          tokenUrl: tokenUrl.href,
          clientId: 'ingest',
          clientSecret: { secretsmanager: 'crm' },
        },
      },
      'crm',
    );
  const context = {
    signal: never,
    deadlineAt: Date.now() + 60_000,
    secrets: new Map([['secretsmanager:crm', SECRET]]),
  };

  it('sends the token as a bearer; on a 401 fetches a new one and sends again at once, once', async () => {
    const tokens = await tokenServer();
    // The endpoint has revoked tok-1.
    const sink = await testEndpoint((request) => ({
      status: request.headers.authorization === 'Bearer tok-1' ? 401 : 200,
    }));
    const sub = subscriber(sink.url, tokens.url);
    expect(await sub.deliver(valid(), context)).toMatchObject({ ok: true, attempts: 2 });
    expect(sink.received.map((r) => r.headers.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-2']);
    expect(await sub.deliver(valid('evt-2'), context)).toMatchObject({ ok: true });
    expect(tokens.requests).toHaveLength(2);
  });

  it('a 401 with a fresh token too is the endpoint refusing us: no endless loop', async () => {
    const tokens = await tokenServer();
    const sink = await testEndpoint(() => ({ status: 401 }));
    const sub = subscriber(sink.url, tokens.url);
    expect(await sub.deliver(valid(), context)).toMatchObject({ ok: false, kind: 'unauthorized', status: 401 });
    expect(sink.received).toHaveLength(2);
  });

  it('an endpoint refusing every token costs two token requests, not one per delivery', async () => {
    const tokens = await tokenServer();
    const sink = await testEndpoint(() => ({ status: 401 }));
    const sub = subscriber(sink.url, tokens.url);
    for (const id of ['evt-1', 'evt-2', 'evt-3', 'evt-4']) {
      expect(await sub.deliver(valid(id), context)).toMatchObject({ ok: false, kind: 'unauthorized' });
    }
    expect(tokens.requests).toHaveLength(2);
  });

  it('a 403 (scope, permission) is retried once after re-reading the secrets, with no new token', async () => {
    const tokens = await tokenServer();
    const sink = await testEndpoint(() => ({ status: 403 }));
    const sub = subscriber(sink.url, tokens.url);
    expect(await sub.deliver(valid(), context)).toMatchObject({ ok: false, kind: 'unauthorized', status: 403 });
    expect(sink.received.map((r) => r.headers.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-1']);
    expect(tokens.requests).toHaveLength(1);
  });

  it('a token endpoint refusing the client secret makes it read again: a rotated secret is picked up at once', async () => {
    const tokens = await tokenServer();
    const sink = await testEndpoint();
    const sub = subscriber(sink.url, tokens.url);
    const secrets = new Map([['secretsmanager:crm', 'before-rotation']]);
    let reads = 0;
    const refreshSecrets = async () => {
      reads++;
      secrets.set('secretsmanager:crm', SECRET);
      return true;
    };
    expect(await sub.deliver(valid(), { ...context, secrets, refreshSecrets })).toMatchObject({
      ok: true,
      attempts: 2,
    });
    expect(reads).toBe(1);
    expect(sink.received.map((r) => r.headers.authorization)).toEqual(['Bearer tok-2']);
  });

  it('a token endpoint that refuses us fails the delivery as unauthorized, and nothing reaches the endpoint', async () => {
    const tokens = await tokenServer();
    const sink = await testEndpoint();
    const sub = subscriber(sink.url, tokens.url);
    const result = await sub.deliver(valid(), { ...context, secrets: new Map([['secretsmanager:crm', 'nope']]) });
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', status: 401 });
    expect(JSON.stringify(result)).toContain('answered 401');
    expect(JSON.stringify(result)).not.toContain('nope');
    expect(sink.received).toHaveLength(0);
  });
});

describe('OAuth with Standard Webhooks signatures', () => {
  it('signs once the token has arrived: webhook-timestamp is the time of sending, not of asking for the token', async () => {
    let nowMs = 1_000_000_000;
    const tokens = await tokenServer(3600, () => {
      nowMs += 30_000;
    });
    const shaper = new RequestShaper(
      {
        name: 'crm',
        url: new URL('https://crm.example.com/in'),
        auth: {
          kind: 'oauth2-client-credentials',
          tokenUrl: tokens.url.href,
          clientId: 'ingest',
          clientSecret: { secretsmanager: 'crm' },
        },
        signing: { scheme: 'standard-webhooks', secrets: [{ ssm: '/sig' }] },
      },
      { timeoutMs: 5000, now: () => nowMs },
    );
    const secrets = new Map([
      ['secretsmanager:crm', SECRET],
      ['ssm:/sig', `whsec_${Buffer.alloc(24, 1).toString('base64')}`],
    ]);
    const request = await shaper.source(valid(), { signal: never, secrets }).prepare();
    expect(request.headers.authorization).toBe('Bearer tok-1');
    expect(request.headers['webhook-timestamp']).toBe(String(1_000_030));
  });
});
