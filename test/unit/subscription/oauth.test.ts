import http from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import { EndpointDelivery } from '../../../lib/delivery/delivery';
import { Endpoint } from '../../../lib/delivery/endpoint';
import {
  type ClientCredentialsOptions,
  ClientCredentialsToken,
  OAuthAbortedError,
  OAuthTokenError,
} from '../../../lib/subscription/oauth';
import { RequestShaper } from '../../../lib/subscription/request';
import { Subscriber } from '../../../lib/subscription/subscriber';
import { listenForTest, testEndpoint } from '../../support/endpoints';
import { subscriberFor, validEvent } from '../../support/subscriptions';

const never = new AbortController().signal;
const SECRET = 's3cr3t/+&';

interface TokenRequest {
  authorization: string;
  form: URLSearchParams;
  contentType: string | undefined;
  accept: string | undefined;
}

/** What the token endpoint answers to the right client: a JSON body, or nothing at all ('hang'). */
type TokenAnswer = Record<string, unknown> | 'hang';

interface TokenServerOptions {
  expiresIn?: number;
  beforeAnswer?: () => void;
  /** The status of a refusal of the client: 401 (HTTP Basic, RFC 6749 section 5.2) or 400. */
  refusal?: 400 | 401;
  /** Overrides the answer to the right client (the n-th token request, from 1). */
  answer?: (n: number) => TokenAnswer;
}

const basicOf = (secret: string) => `Basic ${Buffer.from(`ingest:${encodeURIComponent(secret)}`).toString('base64')}`;

/** A real OAuth 2.0 token endpoint on loopback: issues tok-1, tok-2, ... to the right client, refuses others. */
async function tokenServer(options: TokenServerOptions = {}) {
  const { expiresIn = 3600, beforeAnswer = () => {}, refusal = 401 } = options;
  const requests: TokenRequest[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      const authorization = String(req.headers.authorization);
      const form = new URLSearchParams(body);
      beforeAnswer();
      requests.push({ authorization, form, contentType: req.headers['content-type'], accept: req.headers.accept });
      const right =
        authorization === basicOf(SECRET) ||
        (form.get('client_id') === 'ingest' && form.get('client_secret') === SECRET);
      const answer: TokenAnswer = right
        ? (options.answer?.(requests.length) ?? {
            access_token: `tok-${requests.length}`,
            token_type: 'Bearer',
            expires_in: expiresIn,
          })
        : { error: 'invalid_client' };
      if (answer === 'hang') return;
      res.writeHead(right ? 200 : refusal, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    });
  });
  const url = (await listenForTest(server)).replace('/events', '/oauth2/token');
  return { url: new URL(url), requests };
}

const valid = (id = 'evt-1') => validEvent(id);

const tokenSource = (tokenUrl: URL, now?: () => number, more: Partial<ClientCredentialsOptions> = {}) =>
  new ClientCredentialsToken({
    endpoint: 'crm',
    tokenUrl,
    clientId: 'ingest',
    timeoutMs: 5000,
    ...(now ? { now } : {}),
    ...more,
  });

/** The rejection of a get(), or a failure of the test when it resolves. */
const refusalOf = async (got: Promise<string> | string): Promise<Error> => {
  const outcome = await Promise.resolve(got).then(
    (token) => new Error(`resolved with ${token}`),
    (error: unknown) => error as Error,
  );
  if (outcome.message.startsWith('resolved with')) throw outcome;
  return outcome;
};

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
    expect(tokens.requests[0]).toMatchObject({
      contentType: 'application/x-www-form-urlencoded',
      accept: 'application/json',
    });
  });

  it('renews a token shortly before it expires', async () => {
    const tokens = await tokenServer({ expiresIn: 120 });
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

  it('a token renewed on expiry is replaced on its first refusal: only a replacement of a refused one is held', async () => {
    const tokens = await tokenServer({ expiresIn: 3600 });
    let now = 1_000_000;
    const source = tokenSource(tokens.url, () => now);
    expect(await source.get(SECRET, never)).toBe('tok-1');
    now += 3_600_000;
    expect(await source.get(SECRET, never)).toBe('tok-2');
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

  it('a failure is held for the same client secret exactly 5 s, with no hint for a 5xx', async () => {
    const down = await testEndpoint(() => ({ status: 503 }));
    let now = 1_000_000;
    const source = tokenSource(new URL(down.url), () => now);
    const first = await refusalOf(source.get(SECRET, never));
    expect(first.message).toBe(`OAuth token endpoint ${down.url} answered 503`);
    now += 4_999;
    expect(await refusalOf(source.get(SECRET, never))).toBe(first);
    now += 1;
    await refusalOf(source.get(SECRET, never));
    expect(down.received).toHaveLength(2);
  });

  it('a refused client is an OAuthTokenError naming the endpoint and the token URL, never the secret', async () => {
    const tokens = await tokenServer();
    const source = tokenSource(tokens.url);
    const error = await Promise.resolve(source.get('wrong-secret', never)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OAuthTokenError);
    expect((error as Error).message).toBe(
      `OAuth token endpoint ${tokens.url.href} answered 401 invalid_client: check clientId, the client secret, scope and clientAuth (basic or post)`,
    );
    expect(error).toMatchObject({ name: 'OAuthTokenError', endpoint: 'crm', status: 401 });
    expect((error as Error).message).not.toContain('wrong-secret');
  });
});

describe('ClientCredentialsToken: what the token endpoint answers', () => {
  it('a 400 invalid_client (RFC 6749 section 5.2) is a refusal naming the status and the error code', async () => {
    const tokens = await tokenServer({ refusal: 400 });
    const error = await refusalOf(tokenSource(tokens.url).get('wrong-secret', never));
    expect(error).toBeInstanceOf(OAuthTokenError);
    expect(error).toMatchObject({ status: 400 });
    expect(error.message).toMatch(
      /answered 400 invalid_client: check clientId, the client secret, scope and clientAuth \(basic or post\)$/,
    );
  });

  it('an error code that is not RFC 6749 text is left out of the message', async () => {
    const down = await testEndpoint(() => ({ status: 400, body: JSON.stringify({ error: 'bad "quoted' }) }));
    const error = await refusalOf(tokenSource(new URL(down.url)).get(SECRET, never));
    expect(error.message).toMatch(/answered 400: check clientId/);
  });

  it('a token endpoint that never answers fails the token request after its own timeout, not the deadline', async () => {
    const tokens = await tokenServer({ answer: () => 'hang' });
    const error = await refusalOf(tokenSource(tokens.url, undefined, { timeoutMs: 50 }).get(SECRET, never));
    expect(error).toBeInstanceOf(OAuthTokenError);
    expect(error.message).toMatch(
      /OAuth token request to http:\/\/127\.0\.0\.1:\d+\/oauth2\/token failed: no answer within 50 ms/,
    );
  });

  it('a token request cut off by the deadline is aborted, and the next invocation asks again at once', async () => {
    let hang = true;
    const tokens = await tokenServer({
      answer: (n) => (hang ? 'hang' : { access_token: `tok-${n}`, token_type: 'Bearer' }),
    });
    const source = tokenSource(tokens.url);
    const deadline = new AbortController();
    const waiting = [source.get(SECRET, deadline.signal), source.get(SECRET, deadline.signal)];
    await expect.poll(() => tokens.requests.length).toBe(1);
    deadline.abort();
    for (const error of await Promise.all(waiting.map(refusalOf))) {
      expect(error).toBeInstanceOf(OAuthAbortedError);
      expect(error).toMatchObject({
        name: 'OAuthAbortedError',
        endpoint: 'crm',
        message: 'the invocation deadline was reached while asking for an OAuth token',
      });
    }
    hang = false;
    // Not held for 5 s like a failure of the token endpoint.
    expect(await source.get(SECRET, never)).toBe('tok-2');
  });

  it.each([
    ['no access_token', { token_type: 'Bearer' }, /answered without an access_token/],
    ['an empty access_token', { access_token: '', token_type: 'Bearer' }, /answered without an access_token/],
    ['an access_token that is not text', { access_token: 7, token_type: 'Bearer' }, /answered without an access_token/],
    ['no token_type', { access_token: 'tok' }, /answered token_type null: only Bearer tokens are supported/],
    ['a MAC token', { access_token: 'tok', token_type: 'mac' }, /answered token_type "mac": only Bearer/],
    ['a negative expires_in', { access_token: 'tok', token_type: 'Bearer', expires_in: -1 }, /expires_in that is not/],
    ['an expires_in in words', { access_token: 'tok', token_type: 'Bearer', expires_in: 'soon' }, /expires_in that/],
    ['an empty expires_in', { access_token: 'tok', token_type: 'Bearer', expires_in: '' }, /expires_in that/],
    [
      'an expires_in with a space before',
      { access_token: 'tok', token_type: 'Bearer', expires_in: ' 60' },
      /expires_in/,
    ],
    [
      'an expires_in with a space after',
      { access_token: 'tok', token_type: 'Bearer', expires_in: '60 ' },
      /expires_in/,
    ],
    ['an expires_in of true', { access_token: 'tok', token_type: 'Bearer', expires_in: true }, /expires_in that/],
    ['an expires_in in a list', { access_token: 'tok', token_type: 'Bearer', expires_in: [60] }, /expires_in that/],
    [
      'a long token_type',
      { access_token: 'tok', token_type: 'x'.repeat(100) },
      new RegExp(`answered token_type "${'x'.repeat(39)}: only Bearer`),
    ],
  ])('an answer with %s is refused and held like a failure', async (_, answer, message) => {
    const tokens = await tokenServer({ answer: () => answer });
    const source = tokenSource(tokens.url);
    const error = await refusalOf(source.get(SECRET, never));
    expect(error).toBeInstanceOf(OAuthTokenError);
    expect(error.message).toMatch(message);
    expect(error).not.toHaveProperty('status', expect.anything());
    await refusalOf(source.get(SECRET, never));
    expect(tokens.requests).toHaveLength(1);
  });

  it('an expires_in too large for a number (1e400) is refused, not kept forever', async () => {
    const raw = '{"access_token":"tok","token_type":"Bearer","expires_in":1e400}';
    const server = await testEndpoint(() => ({ status: 200, body: raw }));
    const error = await refusalOf(tokenSource(new URL(server.url)).get(SECRET, never));
    expect(error.message).toMatch(/answered an expires_in that is not a number of seconds/);
  });

  it('a token endpoint that redirects is not followed: the failure gives the reason, not a bare "fetch failed"', async () => {
    const target = await tokenServer();
    const moved = await testEndpoint(() => ({ status: 307, headers: { location: target.url.href } }));
    const error = await refusalOf(tokenSource(new URL(moved.url)).get(SECRET, never));
    expect(error).toBeInstanceOf(OAuthTokenError);
    expect(error.message).toBe(`OAuth token request to ${moved.url} failed: unexpected redirect`);
    expect(target.requests).toHaveLength(0);
  });

  it('a body that stops half-way is bounded by the timeout too, and not held as a body without a token', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"access_token":');
    });
    const url = new URL(await listenForTest(server));
    // Long enough for the status line to arrive first even on a loaded machine: the cut is in the body.
    const error = await refusalOf(tokenSource(url, undefined, { timeoutMs: 1000 }).get(SECRET, never));
    expect(error.message).toMatch(/failed: no answer within 1000 ms/);
  });

  it('a body that stops half-way when the deadline comes is aborted', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"access_token":', () => deadline.abort());
    });
    const deadline = new AbortController();
    const url = new URL(await listenForTest(server));
    expect(await refusalOf(tokenSource(url).get(SECRET, deadline.signal))).toBeInstanceOf(OAuthAbortedError);
  });

  it('an answer larger than 64 KiB is refused before it is all read: a tokenUrl serving a stream or a file', async () => {
    let written = 0;
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"access_token":"');
      // Endless, until the client drops the connection.
      const more = () => {
        written += 16_384;
        if (res.write('a'.repeat(16_384))) setImmediate(more);
        else res.once('drain', more);
      };
      res.on('close', () => res.removeAllListeners('drain'));
      more();
    });
    const url = new URL(await listenForTest(server));
    const error = await refusalOf(tokenSource(url, undefined, { timeoutMs: 5_000 }).get(SECRET, never));
    expect(error).toBeInstanceOf(OAuthTokenError);
    expect(error.message).toBe(
      `OAuth token endpoint ${url.origin}${url.pathname} answered more than 65536 bytes: not a token answer (check tokenUrl)`,
    );
    expect(written).toBeLessThan(64 * 1024 * 1024);
  });

  it('a body that is not JSON is an answer without an access_token', async () => {
    const down = await testEndpoint(() => ({ status: 200, body: 'welcome' }));
    const error = await refusalOf(tokenSource(new URL(down.url)).get(SECRET, never));
    expect(error.message).toMatch(/answered without an access_token/);
  });

  it('accepts token_type in any case (RFC 6749 section 5.1) and expires_in as a string of digits', async () => {
    let now = 1_000_000;
    const tokens = await tokenServer({
      answer: (n) => ({ access_token: `tok-${n}`, token_type: 'bEaReR', expires_in: '120' }),
    });
    const source = tokenSource(tokens.url, () => now);
    expect(await source.get(SECRET, never)).toBe('tok-1');
    now += 107_999;
    expect(await source.get(SECRET, never)).toBe('tok-1');
    now += 1;
    expect(await source.get(SECRET, never)).toBe('tok-2');
  });

  it('an access_token HTTP cannot carry (a line break) is refused and not kept: the next answer is used', async () => {
    const tokens = await tokenServer({
      answer: (n) => ({ access_token: n === 1 ? 'tok-1\r\nX-Injected: 1' : `tok-${n}`, token_type: 'Bearer' }),
    });
    let now = 1_000_000;
    const source = tokenSource(tokens.url, () => now);
    const error = await refusalOf(source.get(SECRET, never));
    expect(error).toBeInstanceOf(OAuthTokenError);
    expect(error.message).toMatch(/answered an access_token that cannot be sent in an Authorization header/);
    expect(error.message).not.toContain('tok-1');
    now += 5_000;
    expect(await source.get(SECRET, never)).toBe('tok-2');
  });

  it('expires_in 0 serves the requests waiting for that token and no later one', async () => {
    const tokens = await tokenServer({ expiresIn: 0 });
    const source = tokenSource(tokens.url, () => 1_000_000);
    expect(await Promise.all([source.get(SECRET, never), source.get(SECRET, never)])).toEqual(['tok-1', 'tok-1']);
    expect(await source.get(SECRET, never)).toBe('tok-2');
  });

  it('without expires_in (or null) a token is kept 300 s: renewed at 270 s, 90% of it', async () => {
    let now = 1_000_000;
    const tokens = await tokenServer({
      answer: (n) => ({ access_token: `tok-${n}`, token_type: 'Bearer', ...(n === 2 ? { expires_in: null } : {}) }),
    });
    const source = tokenSource(tokens.url, () => now);
    expect(await source.get(SECRET, never)).toBe('tok-1');
    now += 269_999;
    expect(await source.get(SECRET, never)).toBe('tok-1');
    now += 1;
    expect(await source.get(SECRET, never)).toBe('tok-2');
    now += 269_999;
    expect(await source.get(SECRET, never)).toBe('tok-2');
    now += 1;
    expect(await source.get(SECRET, never)).toBe('tok-3');
  });

  it('a long lifetime is renewed 60 s before it ends', async () => {
    let now = 1_000_000;
    const tokens = await tokenServer({ expiresIn: 3600 });
    const source = tokenSource(tokens.url, () => now);
    expect(await source.get(SECRET, never)).toBe('tok-1');
    now += 3_539_999;
    expect(await source.get(SECRET, never)).toBe('tok-1');
    now += 1;
    expect(await source.get(SECRET, never)).toBe('tok-2');
  });

  it('client_secret_post sends the client id and secret in the form, and no Authorization header', async () => {
    const tokens = await tokenServer();
    const source = tokenSource(tokens.url, undefined, { clientAuth: 'post', scope: 'events.write' });
    expect(await source.get(SECRET, never)).toBe('tok-1');
    const [request] = tokens.requests;
    expect(request?.authorization).toBe('undefined');
    expect(Object.fromEntries(request?.form ?? [])).toEqual({
      grant_type: 'client_credentials',
      scope: 'events.write',
      client_id: 'ingest',
      client_secret: SECRET,
    });
  });

  it('client_secret_basic encodes a space in the secret as +, as application/x-www-form-urlencoded does', async () => {
    const tokens = await tokenServer();
    await refusalOf(tokenSource(tokens.url).get('two words', never));
    expect(tokens.requests[0]?.authorization).toBe(`Basic ${Buffer.from('ingest:two+words').toString('base64')}`);
  });

  it('client_secret_basic form-encodes the id and secret (RFC 6749 section 2.3.1) and keeps them out of the form', async () => {
    const tokens = await tokenServer();
    const source = new ClientCredentialsToken({
      endpoint: 'crm',
      tokenUrl: tokens.url,
      clientId: 'ingest',
      timeoutMs: 5000,
    });
    expect(await source.get(SECRET, never)).toBe('tok-1');
    const [request] = tokens.requests;
    expect(request?.authorization).toBe(basicOf(SECRET));
    expect(Object.fromEntries(request?.form ?? [])).toEqual({ grant_type: 'client_credentials' });
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
    // The token endpoint's 401 is not the endpoint's status: the by-status query must not show it as one.
    expect(result).toMatchObject({
      ok: false,
      kind: 'unauthorized',
      error: expect.stringMatching(/^OAUTH_TOKEN_REFUSED: /),
    });
    expect(result).not.toHaveProperty('status');
    expect(JSON.stringify(result)).toContain('answered 401 invalid_client');
    expect(JSON.stringify(result)).not.toContain('nope');
    expect(sink.received).toHaveLength(0);
  });

  it('a token endpoint answering 400 invalid_client is a refusal too: the rotated secret is read again at once', async () => {
    const tokens = await tokenServer({ refusal: 400 });
    const sink = await testEndpoint();
    const secrets = new Map([['secretsmanager:crm', 'before-rotation']]);
    const refreshSecrets = async () => {
      secrets.set('secretsmanager:crm', SECRET);
      return true;
    };
    const result = await subscriber(sink.url, tokens.url).deliver(valid(), { ...context, secrets, refreshSecrets });
    expect(result).toMatchObject({ ok: true, attempts: 2 });
    expect(sink.received.map((r) => r.headers.authorization)).toEqual(['Bearer tok-2']);
  });

  it("a token endpoint's 400 fails as unauthorized with the token endpoint's status in the error, not as poison", async () => {
    const tokens = await tokenServer({ refusal: 400 });
    const sink = await testEndpoint();
    const result = await subscriber(sink.url, tokens.url).deliver(valid(), {
      ...context,
      secrets: new Map([['secretsmanager:crm', 'nope']]),
    });
    expect(result).toMatchObject({
      ok: false,
      kind: 'unauthorized',
      error: expect.stringMatching(/^OAUTH_TOKEN_REFUSED: OAuth token endpoint .* answered 400 invalid_client/),
    });
    expect(result).not.toHaveProperty('status');
    expect(sink.received).toHaveLength(0);
  });

  it('clientAuth: post in the endpoints file sends the client secret in the form', async () => {
    const tokens = await tokenServer();
    const sink = await testEndpoint();
    const sub = subscriberFor(
      sink.url,
      {
        auth: {
          kind: 'oauth2-client-credentials',
          tokenUrl: tokens.url.href,
          clientId: 'ingest',
          clientSecret: { secretsmanager: 'crm' },
          clientAuth: 'post',
        },
      },
      'crm',
    );
    expect(await sub.deliver(valid(), context)).toMatchObject({ ok: true });
    expect(tokens.requests[0]?.form.get('client_secret')).toBe(SECRET);
    expect(tokens.requests[0]?.authorization).toBe('undefined');
  });

  it('a token request the deadline cuts off is aborted: the breaker stays closed, the token endpoint is asked again', async () => {
    let hang = true;
    const tokens = await tokenServer({
      answer: (n) => (hang ? 'hang' : { access_token: `tok-${n}`, token_type: 'Bearer' }),
    });
    const sink = await testEndpoint();
    const target = new URL(sink.url);
    const auth = {
      kind: 'oauth2-client-credentials',
      tokenUrl: tokens.url.href,
      clientId: 'ingest',
      clientSecret: { secretsmanager: 'crm' },
    } as const;
    // A breaker that opens on the first transient failure: an abort counted as one would open it.
    const lane = new EndpointDelivery(
      new Endpoint({ name: 'crm', url: target, timeoutMs: 10_000, maxConnections: 4 }),
      {
        maxAttempts: 3,
        baseMs: 1,
        maxMs: 1,
        breakerThreshold: 1,
        breakerHalfOpenMs: 600_000,
        maxConnections: 4,
      },
    );
    const sub = new Subscriber({ name: 'crm', url: target, auth }, lane, { timeoutMs: 10_000 });
    onTestFinished(() => sub.close());
    const deadline = new AbortController();
    const cut = [valid('evt-1'), valid('evt-2')].map((event) =>
      sub.deliver(event, { ...context, signal: deadline.signal }),
    );
    await expect.poll(() => tokens.requests.length).toBe(1);
    deadline.abort();
    for (const result of await Promise.all(cut)) expect(result).toMatchObject({ ok: false, kind: 'aborted' });
    hang = false;
    expect(await sub.deliver(valid('evt-3'), context)).toMatchObject({ ok: true, attempts: 1 });
    expect(sink.received.map((r) => r.headers.authorization)).toEqual(['Bearer tok-2']);
  });
});

describe('OAuth with Standard Webhooks signatures', () => {
  it('signs once the token has arrived: webhook-timestamp is the time of sending, not of asking for the token', async () => {
    let nowMs = 1_000_000_000;
    const tokens = await tokenServer({
      beforeAnswer: () => {
        nowMs += 30_000;
      },
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
