import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import net, { type Socket } from 'node:net';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import {
  authHeaders,
  CONTENT_TYPE,
  type Credential,
  classifyStatus,
  Endpoint,
  type PreparedRequest,
  parseRetryAfter,
  USER_AGENT,
} from '../../../lib/delivery/endpoint';
import { DeliveryAttemptError } from '../../../lib/errors';
import { idempotencyKey } from '../../../lib/event/event';
import { closedPortUrl, listenForTest, testEndpoint } from '../../support/endpoints';
import { cloudEvent } from '../../support/events';

function endpointFor(url: string, timeoutMs = 2000, maxConnections = 4): Endpoint {
  const endpoint = new Endpoint({ name: 'sink', url: new URL(url), timeoutMs, maxConnections });
  onTestFinished(() => endpoint.close());
  return endpoint;
}

/** A bare loopback server for what TestEndpoint does not show: connections and server-side socket closes. */
async function rawServer(handler: http.RequestListener) {
  const sockets: Socket[] = [];
  const srv = http.createServer(handler);
  srv.on('connection', (socket) => sockets.push(socket));
  const url = await listenForTest(srv);
  return { url, sockets };
}

/** A loopback TCP server that accepts and never says a word (no TLS handshake, no HTTP answer). */
async function silentServer() {
  // Reads (and ignores) what comes: a socket never read does not see its peer close.
  const srv = net.createServer((socket) => socket.resume());
  const accepted = new Promise<Socket>((resolve) => srv.once('connection', resolve));
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const sockets: Socket[] = [];
  srv.on('connection', (socket) => sockets.push(socket));
  onTestFinished(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => srv.close(() => resolve()));
  });
  const { port } = srv.address() as net.AddressInfo;
  const count = () => sockets.length;
  // The socket the client opened closes on the server's side too: what our abort tore down.
  const closed = accepted.then((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())));
  return { port, accepted, closed, count };
}

// undici's coarse clock, reset so that it ticks on whichever setTimeout is installed (its test hook).
const undiciClock = createRequire(import.meta.url)('undici/lib/util/timers.js') as { reset(): void };

/**
 * The attempt's deadline on a fake clock (timers only; sockets stay real): settled or not after `ms` of fake time,
 * without a timed assertion. undici's own timers (its coarse clock ticks on setTimeout too) see the same fake time.
 */
function onFakeClock() {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  undiciClock.reset();
  onTestFinished(() => {
    vi.useRealTimers();
    undiciClock.reset();
  });
}

/** Advances the fake clock, then lets real I/O run (undici's timers hand over to setImmediate) before looking. */
async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  for (let turn = 0; turn < 3; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function track<T>(promise: Promise<T>) {
  const state = {
    settled: false,
    result: promise.then(
      (value) => value,
      (error: unknown) => error,
    ),
  };
  void state.result.then(() => {
    state.settled = true;
  });
  return state;
}

/** A server that answers `status` with a body it promises but cuts with a reset after a few bytes. */
function cutBodyServer(status: number, headers: Record<string, string> = {}) {
  return rawServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(status, { 'content-length': '100', ...headers });
      res.write('partial', () => req.socket.resetAndDestroy());
    });
  });
}

const body = Buffer.from(JSON.stringify(cloudEvent('evt-1', { data: { text: 'héllo 🚀' } })), 'utf8');
const key = idempotencyKey('urn:test:orders', 'evt-1');
const never = new AbortController().signal;

/** The request lib/subscription/request.ts shapes for a structured event, with ENDPOINT_CREDENTIALS' credential. */
function structured(credential?: Credential): PreparedRequest {
  return {
    headers: { 'content-type': CONTENT_TYPE, 'idempotency-key': key, ...authHeaders(credential, body) },
    body,
  };
}

async function attemptError(promise: Promise<unknown>): Promise<DeliveryAttemptError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(DeliveryAttemptError);
  return error as DeliveryAttemptError;
}

describe('Endpoint.post: the request', () => {
  it('POSTs the exact body bytes as a structured CloudEvent with the idempotency key', async () => {
    const sink = await testEndpoint();
    const result = await endpointFor(sink.url).post(structured(), never);
    expect(result.status).toBe(200);
    expect(result.latencyMs).toBeGreaterThanOrEqual(0);
    expect(sink.received).toHaveLength(1);
    const [request] = sink.received;
    expect(request?.method).toBe('POST');
    expect(request?.path).toBe('/events');
    expect(request?.headers['content-type']).toBe('application/cloudevents+json; charset=utf-8');
    expect(CONTENT_TYPE).toBe('application/cloudevents+json; charset=utf-8');
    expect(request?.headers['content-length']).toBe(String(body.length));
    expect(request?.headers['idempotency-key']).toBe(key);
    expect(request?.headers.authorization).toBeUndefined();
    expect(request?.headers['x-signature-256']).toBeUndefined();
    expect(request?.body.equals(body)).toBe(true);
  });

  it('sends a bearer token when the endpoint has one', async () => {
    const sink = await testEndpoint();
    await endpointFor(sink.url).post(structured({ kind: 'bearer', token: 'tok-123' }), never);
    expect(sink.received[0]?.headers.authorization).toBe('Bearer tok-123');
  });

  it('signs the body with HMAC-SHA256 when the endpoint has a secret', async () => {
    const secret = 'shared-secret';
    const sink = await testEndpoint((request) => {
      // What a receiving endpoint does: recompute the signature over the raw body, compare in constant time.
      const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(request.body).digest('hex')}`);
      const got = Buffer.from(String(request.headers['x-signature-256'] ?? ''));
      return { status: got.length === expected.length && timingSafeEqual(got, expected) ? 204 : 401 };
    });
    const endpoint = endpointFor(sink.url);
    await expect(endpoint.post(structured({ kind: 'hmac', secret }), never)).resolves.toMatchObject({ status: 204 });
    const wrong = await attemptError(endpoint.post(structured({ kind: 'hmac', secret: 'other' }), never));
    expect(wrong).toMatchObject({ kind: 'unauthorized', status: 401 });
    expect(sink.received[0]?.headers.authorization).toBeUndefined();
  });

  it('reuses keep-alive connections for sequential posts', async () => {
    const srv = await rawServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    const endpoint = endpointFor(srv.url);
    for (let i = 0; i < 8; i++) await endpoint.post(structured(), never);
    // undici frees a socket one event-loop turn after its response (a guard against servers that close it anyway), so
    // a post sent at once takes a second connection; from then on the two alternate.
    expect(srv.sockets.length).toBeLessThanOrEqual(2);
    expect(srv.sockets.every((socket) => !socket.destroyed)).toBe(true);
  });
});

describe('Endpoint.post: outcome classification', () => {
  it('any 2xx delivers', async () => {
    for (const status of [200, 201, 202, 204, 299]) {
      const sink = await testEndpoint(() => ({ status }));
      await expect(endpointFor(sink.url).post(structured(), never)).resolves.toMatchObject({ status });
    }
  });

  it('does not follow redirects', async () => {
    const elsewhere = await testEndpoint();
    for (const status of [301, 302, 307, 308]) {
      const sink = await testEndpoint(() => ({ status, headers: { location: elsewhere.url } }));
      const error = await attemptError(endpointFor(sink.url).post(structured(), never));
      expect(error).toMatchObject({ kind: 'redirect', status, endpoint: 'sink' });
      expect(error.message).toContain('not followed');
    }
    expect(elsewhere.received).toHaveLength(0);
  });

  it('408, 429 and 5xx are transient, with Retry-After in seconds', async () => {
    for (const status of [408, 429, 500, 502, 503, 504]) {
      const sink = await testEndpoint(() => ({ status, headers: { 'retry-after': '7' } }));
      const error = await attemptError(endpointFor(sink.url).post(structured(), never));
      expect(error).toMatchObject({ kind: 'transient', status, retryAfterMs: 7000 });
    }
  });

  it('reads a Retry-After HTTP-date as the time left until then', async () => {
    const at = new Date(Date.now() + 30_000);
    const sink = await testEndpoint(() => ({ status: 503, headers: { 'retry-after': at.toUTCString() } }));
    const error = await attemptError(endpointFor(sink.url).post(structured(), never));
    expect(error.kind).toBe('transient');
    // The HTTP-date has whole seconds and time passes during the request: up to 30 s, and well above 25 s.
    expect(error.retryAfterMs).toBeGreaterThan(25_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(30_000);
  });

  it('a transient answer without Retry-After has no retry hint', async () => {
    const sink = await testEndpoint(() => ({ status: 500 }));
    const error = await attemptError(endpointFor(sink.url).post(structured(), never));
    expect(error.retryAfterMs).toBeUndefined();
  });

  it('other 4xx never carry a retry hint: 400/413/415/422 blame the event, 401/403 our credentials, the rest the endpoint', async () => {
    const expected: Record<number, string> = { 400: 'rejected', 413: 'rejected', 415: 'rejected', 422: 'rejected' };
    Object.assign(expected, { 401: 'unauthorized', 403: 'unauthorized', 404: 'endpoint-error', 405: 'endpoint-error' });
    Object.assign(expected, { 409: 'endpoint-error', 410: 'endpoint-error' });
    for (const [status, kind] of Object.entries(expected)) {
      const sink = await testEndpoint(() => ({ status: Number(status), headers: { 'retry-after': '5' } }));
      const error = await attemptError(endpointFor(sink.url).post(structured(), never));
      expect(error).toMatchObject({ kind, status: Number(status) });
      expect(error.retryAfterMs).toBeUndefined();
    }
  });

  it('a connection reset is transient', async () => {
    const sink = await testEndpoint(() => ({ reset: true }));
    const error = await attemptError(endpointFor(sink.url).post(structured(), never));
    expect(error.kind).toBe('transient');
    expect(error.status).toBeUndefined();
    expect(error.code).toBe('ECONNRESET');
  });

  it('a refused connection is transient', async () => {
    const error = await attemptError(endpointFor(await closedPortUrl()).post(structured(), never));
    expect(error).toMatchObject({ kind: 'transient', code: 'ECONNREFUSED' });
  });

  it('an endpoint that never answers is a transient TIMEOUT after timeoutMs', async () => {
    const sink = await testEndpoint(() => ({ hang: true }));
    const started = performance.now();
    const error = await attemptError(endpointFor(sink.url, 150).post(structured(), never));
    expect(error).toMatchObject({ kind: 'transient', code: 'TIMEOUT' });
    expect(error.message).toContain('150 ms');
    // A lower bound only: the timeout must not cut the request short.
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    expect(sink.received).toHaveLength(1);
  });

  it('an answer slower than timeoutMs is a TIMEOUT too', async () => {
    const sink = await testEndpoint(() => ({ status: 200, delayMs: 1000 }));
    const error = await attemptError(endpointFor(sink.url, 100).post(structured(), never));
    expect(error).toMatchObject({ kind: 'transient', code: 'TIMEOUT' });
  });

  it('the abort signal ends a hanging request as aborted, without waiting for the timeout', {
    timeout: 5000,
  }, async () => {
    const sink = await testEndpoint(() => ({ hang: true }));
    const controller = new AbortController();
    const pending = endpointFor(sink.url, 60_000).post(structured(), controller.signal);
    await sink.waitForRequests(1);
    controller.abort();
    const error = await attemptError(pending);
    expect(error).toMatchObject({ kind: 'aborted', endpoint: 'sink' });
  });

  it('an already aborted signal sends nothing', async () => {
    const sink = await testEndpoint();
    const error = await attemptError(endpointFor(sink.url).post(structured(), AbortSignal.abort()));
    expect(error.kind).toBe('aborted');
    expect(sink.received).toHaveLength(0);
  });

  it('a huge response body is not read to the end: the status decides, the connection is dropped', {
    timeout: 10_000,
  }, async () => {
    let serverSocketClosed!: Promise<void>;
    let wroteAll = false;
    const srv = await rawServer((req, res) => {
      req.resume();
      res.once('finish', () => {
        wroteAll = true;
      });
      serverSocketClosed = new Promise((resolve) => req.socket.once('close', () => resolve()));
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(50 * 1024 * 1024) });
      // 50 MB in 64 KiB chunks (more than socket buffers hold), written as fast as the client reads.
      const chunk = Buffer.alloc(64 * 1024, 'x');
      let sent = 0;
      const pump = () => {
        while (sent < 800) {
          sent++;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('error', () => {});
      pump();
    });
    await expect(endpointFor(srv.url).post(structured(), never)).resolves.toMatchObject({ status: 200 });
    // The client dropped the connection rather than read on: the server never got to write the whole body.
    await serverSocketClosed;
    expect(srv.sockets[0]?.destroyed).toBe(true);
    expect(wroteAll).toBe(false);
  });

  it('a 2xx whose body is cut by a reset is a transient failure, not a delivery (issue 9, defect 5)', async () => {
    const srv = await cutBodyServer(200);
    const error = await attemptError(endpointFor(srv.url).post(structured(), never));
    expect(error).toMatchObject({ kind: 'transient', code: 'INCOMPLETE_200' });
    // Review finding 11: not a failure "with status 200".
    expect(error.status).toBeUndefined();
  });

  it('a small response body is drained and the connection kept', async () => {
    const srv = await rawServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('x'.repeat(16 * 1024)));
    });
    const endpoint = endpointFor(srv.url);
    for (let i = 0; i < 4; i++) await endpoint.post(structured(), never);
    expect(srv.sockets.length).toBeLessThanOrEqual(2);
    expect(srv.sockets.every((socket) => !socket.destroyed)).toBe(true);
  });

  it('reports each request to the observer with its status or error', async () => {
    const sink = await testEndpoint((_, attempt) => (attempt === 1 ? { status: 503 } : { reset: true }));
    const seen: Array<{ endpoint: string; outcome?: { status?: number; error?: string } }> = [];
    const endpoint = new Endpoint(
      { name: 'sink', url: new URL(sink.url), timeoutMs: 2000, maxConnections: 1 },
      (name) => {
        const entry: (typeof seen)[number] = { endpoint: name };
        seen.push(entry);
        return (outcome) => {
          entry.outcome = outcome;
        };
      },
    );
    onTestFinished(() => endpoint.close());
    await attemptError(endpoint.post(structured(), never));
    await attemptError(endpoint.post(structured(), never));
    expect(seen).toEqual([
      { endpoint: 'sink', outcome: { status: 503 } },
      { endpoint: 'sink', outcome: { error: 'ECONNRESET' } },
    ]);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-11-25T10:00:00Z');

  it('reads delta-seconds', () => {
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter('5', now)).toBe(5000);
    expect(parseRetryAfter(' 120 ', now)).toBe(120_000);
  });

  it('reads an HTTP-date relative to now, never negative', () => {
    expect(parseRetryAfter('Wed, 25 Nov 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed, 25 Nov 2026 09:59:00 GMT', now)).toBe(0);
  });

  it('ignores missing and unreadable values', () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('12 s', now)).toBeUndefined();
    expect(parseRetryAfter('0x10', now)).toBeUndefined();
  });
});

describe('classifyStatus', () => {
  it('maps statuses to outcomes', () => {
    for (const status of [200, 202, 204, 299]) expect(classifyStatus('e', status, undefined)).toBeUndefined();
    for (const status of [300, 301, 302, 303, 304, 307, 308]) {
      expect(classifyStatus('e', status, undefined)).toMatchObject({ kind: 'redirect', status, endpoint: 'e' });
    }
    for (const status of [408, 429, 500, 501, 503, 599]) {
      expect(classifyStatus('e', status, '3')).toMatchObject({ kind: 'transient', status, retryAfterMs: 3000 });
    }
    for (const status of [400, 413, 415, 422]) {
      expect(classifyStatus('e', status, '3')).toMatchObject({ kind: 'rejected', status });
      expect(classifyStatus('e', status, '3', true)).toMatchObject({ kind: 'rejected', status });
    }
    // 431 blames the event only when the headers carry it (binary mode); otherwise they are ours.
    expect(classifyStatus('e', 431, '3', true)).toMatchObject({ kind: 'rejected', status: 431 });
    expect(classifyStatus('e', 431, '3')).toMatchObject({ kind: 'endpoint-error', status: 431 });
    for (const status of [401, 403]) {
      expect(classifyStatus('e', status, '3')).toMatchObject({ kind: 'unauthorized', code: 'CREDENTIALS_REFUSED' });
    }
    for (const status of [402, 404, 405, 406, 409, 410, 411, 412, 414, 416, 417, 418, 421, 423, 428, 451, 499]) {
      expect(classifyStatus('e', status, '3')).toMatchObject({ kind: 'endpoint-error', status });
    }
  });
});

describe('attempt error messages (read in the failure log line)', () => {
  it('say what the endpoint answered', () => {
    expect(classifyStatus('e', 503, undefined)?.message).toBe('answered 503');
    expect(classifyStatus('e', 422, undefined)?.message).toBe('answered 422');
    expect(classifyStatus('e', 404, undefined)?.message).toBe('answered 404');
    expect(classifyStatus('e', 403, undefined)?.message).toBe('answered 403: credentials refused');
    expect(classifyStatus('e', 302, undefined)?.message).toBe('answered 302; redirects are not followed');
  });

  it('say why a request was cut', async () => {
    const sink = await testEndpoint();
    const aborted = await attemptError(endpointFor(sink.url).post(structured(), AbortSignal.abort()));
    expect(aborted.message).toBe('the invocation deadline was reached');
    const hanging = await testEndpoint(() => ({ hang: true }));
    const controller = new AbortController();
    const pending = endpointFor(hanging.url, 30_000).post(structured(), controller.signal);
    await hanging.waitForRequests(1);
    controller.abort();
    expect((await attemptError(pending)).message).toBe('the invocation deadline was reached');
    const srv = await cutBodyServer(200);
    expect((await attemptError(endpointFor(srv.url).post(structured(), never))).message).toBe(
      'answered 200 but the body was cut',
    );
  });
});

describe('authHeaders', () => {
  const payload = Buffer.from('{"id":"1"}');

  it('adds nothing without a credential', () => {
    expect(authHeaders(undefined, payload)).toEqual({});
  });

  it('adds a bearer token', () => {
    expect(authHeaders({ kind: 'bearer', token: 't0k' }, payload)).toEqual({ authorization: 'Bearer t0k' });
  });

  it('signs the exact bytes with HMAC-SHA256', () => {
    const signature = createHmac('sha256', 's3cret').update(payload).digest('hex');
    expect(authHeaders({ kind: 'hmac', secret: 's3cret' }, payload)).toEqual({
      'x-signature-256': `sha256=${signature}`,
    });
    expect(authHeaders({ kind: 'hmac', secret: 's3cret' }, Buffer.from('{"id":"2"}'))).not.toEqual(
      authHeaders({ kind: 'hmac', secret: 's3cret' }, payload),
    );
  });
});

describe('Endpoint.post: edges found by mutation testing (issue 9)', () => {
  it('sends its own user-agent unless the request brings one', async () => {
    const sink = await testEndpoint();
    const endpoint = endpointFor(sink.url);
    await endpoint.post(structured(), never);
    await endpoint.post({ headers: { ...structured().headers, 'user-agent': 'subscriber/2' }, body }, never);
    expect(sink.received.map((request) => request.headers['user-agent'])).toEqual([USER_AGENT, 'subscriber/2']);
    expect(USER_AGENT).toBe('ingest-fanout/0.1');
  });

  it('a failure status decides even when its body is cut short', async () => {
    for (const [status, kind] of [
      [503, 'transient'],
      [404, 'endpoint-error'],
      [300, 'redirect'],
    ] as const) {
      const srv = await cutBodyServer(status, { 'retry-after': '4' });
      const error = await attemptError(endpointFor(srv.url).post(structured(), never));
      expect(error).toMatchObject({ kind, status });
    }
  });

  it('a 2xx at the edge of the range whose body is cut is still incomplete', async () => {
    const srv = await cutBodyServer(299);
    const error = await attemptError(endpointFor(srv.url).post(structured(), never));
    expect(error).toMatchObject({ kind: 'transient', code: 'INCOMPLETE_299' });
  });

  it('an endpoint that never answers is a TIMEOUT at timeoutMs exactly, also from 2,000 ms up', async () => {
    const sink = await testEndpoint(() => ({ hang: true }));
    const endpoint = endpointFor(sink.url, 2000);
    onFakeClock();
    const attempt = track(endpoint.post(structured(), never));
    await sink.waitForRequests(1);
    await advance(1999);
    expect(attempt.settled).toBe(false);
    // undici's headers timeout, on its coarse clock, fired about 0.5 s late here.
    await advance(1);
    expect(attempt.settled).toBe(true);
    expect(await attempt.result).toMatchObject({ kind: 'transient', code: 'TIMEOUT', status: undefined });
    expect(((await attempt.result) as Error).message).toContain('2000 ms');
  });

  it('the deadline calls done exactly once, also when it cuts the body of a failure status', async () => {
    for (const answer of ['none', 'a 503 whose body never ends'] as const) {
      let closed!: Promise<void>;
      const srv = await rawServer((req, res) => {
        req.resume();
        closed = new Promise((resolve) => req.socket.once('close', () => resolve()));
        if (answer !== 'none') res.writeHead(503, { 'content-length': '100' }).write('partial');
      });
      const calls: (DeliveryAttemptError | undefined)[] = [];
      const first = new Promise<void>((resolve) => {
        endpointFor(srv.url, 100).send(structured(), never, (error) => {
          calls.push(error);
          resolve();
        });
      });
      await first;
      // The abort tore the socket down (and undici reported it to the attempt) before the server saw it close.
      await closed;
      expect(calls.map((error) => error?.code)).toEqual(['TIMEOUT']);
    }
  });

  it('a TLS handshake that never ends is a TIMEOUT at timeoutMs, and the connection is torn down', async () => {
    const server = await silentServer();
    const endpoint = endpointFor(`https://127.0.0.1:${server.port}/events`, 3000);
    onFakeClock();
    const attempt = track(endpoint.post(structured(), never));
    await server.accepted;
    await advance(2999);
    expect(attempt.settled).toBe(false);
    // undici's 10 s connect timeout used to outlast a 3 s DELIVERY_TIMEOUT_MS.
    await advance(1);
    expect(attempt.settled).toBe(true);
    expect(await attempt.result).toMatchObject({ kind: 'transient', code: 'TIMEOUT', endpoint: 'sink' });
    await server.closed;
  });

  it('a timeoutMs above 10 s allows a slower handshake: the connection is kept until then', async () => {
    const server = await silentServer();
    const endpoint = endpointFor(`https://127.0.0.1:${server.port}/events`, 12_000);
    onFakeClock();
    const attempt = track(endpoint.post(structured(), never));
    const socket = await server.accepted;
    await advance(11_999);
    expect(attempt.settled).toBe(false);
    expect(socket.destroyed).toBe(false);
    await advance(1);
    expect(await attempt.result).toMatchObject({ kind: 'transient', code: 'TIMEOUT' });
    await server.closed;
  });

  it('an abort during the TLS handshake tears that connection down at once: the next attempt gets its own', async () => {
    const server = await silentServer();
    // One connection: a handshake kept after its attempt was aborted would hold the next attempt in the pool.
    const endpoint = endpointFor(`https://127.0.0.1:${server.port}/events`, 3000, 1);
    onFakeClock();
    const controller = new AbortController();
    const cut = endpoint.post(structured(), controller.signal);
    await server.accepted;
    controller.abort();
    expect(await attemptError(cut)).toMatchObject({ kind: 'aborted' });
    await server.closed;
    const next = track(endpoint.post(structured(), never));
    await advance(3000);
    expect(await next.result).toMatchObject({ kind: 'transient', code: 'TIMEOUT' });
    // Its own handshake started when it was sent, not when the aborted one's connect timer ran out.
    expect(server.count()).toBe(2);
  });

  it('an abort ends only the requests of its own signal', { timeout: 10_000 }, async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const sink = await testEndpoint(() => ({ status: 200, after: released }));
    const endpoint = endpointFor(sink.url, 30_000);
    const controller = new AbortController();
    const cut = endpoint.post(structured(), controller.signal);
    const kept = endpoint.post(structured(), never);
    await sink.waitForRequests(2);
    controller.abort();
    expect(await attemptError(cut)).toMatchObject({ kind: 'aborted' });
    release();
    await expect(kept).resolves.toMatchObject({ status: 200 });
  });

  it('an abort still reaches a request in flight after an earlier one of the same signal finished', async () => {
    const sink = await testEndpoint((request) => (request.eventId === 'evt-fast' ? { status: 200 } : { hang: true }));
    const endpoint = endpointFor(sink.url, 60_000);
    const controller = new AbortController();
    const fast = Buffer.from(JSON.stringify(cloudEvent('evt-fast')));
    const finished = endpoint.post({ headers: structured().headers, body: fast }, controller.signal);
    const hanging = endpoint.post(structured(), controller.signal);
    await expect(finished).resolves.toMatchObject({ status: 200 });
    await sink.waitForRequests(2);
    // The finished request left a free slot before the hanging one: the abort must walk past it.
    controller.abort();
    expect(await attemptError(hanging)).toMatchObject({ kind: 'aborted' });
  });

  it('an abort reaches every request of its signal in flight, and a request settled while queued is never sent', {
    timeout: 10_000,
  }, async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const sink = await testEndpoint(() => ({ status: 200, after: released }));
    // One connection: the second request waits in the pool, not yet on a socket.
    const endpoint = endpointFor(sink.url, 30_000, 1);
    const first = endpoint.post(structured(), never);
    await sink.waitForRequests(1);
    const controller = new AbortController();
    const queued = [endpoint.post(structured(), controller.signal), endpoint.post(structured(), controller.signal)];
    controller.abort();
    for (const error of await Promise.all(queued.map(attemptError))) expect(error.kind).toBe('aborted');
    release();
    await first;
    // The next request goes after anything still queued: the aborted ones were dropped, not sent.
    await endpoint.post(structured(), never);
    expect(sink.received).toHaveLength(2);
  });

  it('reports a latency no longer than the post took', async () => {
    const sink = await testEndpoint(() => ({ status: 200, delayMs: 20 }));
    const started = performance.now();
    const result = await endpointFor(sink.url).post(structured(), never);
    expect(result.latencyMs).toBeGreaterThan(0);
    expect(result.latencyMs).toBeLessThanOrEqual(performance.now() - started);
  });
});

describe('Endpoint connections', () => {
  it('opens no more than maxConnections connections however many requests come at once', async () => {
    const srv = await rawServer((req, res) => {
      req.resume();
      req.on('end', () => res.end());
    });
    const endpoint = endpointFor(srv.url, 2000, 2);
    await Promise.all(Array.from({ length: 6 }, () => endpoint.post(structured(), never)));
    expect(srv.sockets.length).toBeLessThanOrEqual(2);
  });
});

describe('Endpoint: more edges found by mutation testing (issue 9)', () => {
  it('reads Retry-After by its name, not by any header of the same length', async () => {
    const sink = await testEndpoint(() => ({ status: 503, headers: { 'x-trace-ids': 'abc', 'retry-after': '7' } }));
    const error = await attemptError(endpointFor(sink.url).post(structured(), never));
    expect(error).toMatchObject({ kind: 'transient', retryAfterMs: 7000 });
  });

  it('a request still waiting for a pooled connection times out like one on the wire', async () => {
    const sink = await testEndpoint(() => ({ hang: true }));
    const endpoint = endpointFor(sink.url, 100, 1);
    const errors = await Promise.all(
      [endpoint.post(structured(), never), endpoint.post(structured(), never)].map(attemptError),
    );
    expect(errors.map((error) => error.code)).toEqual(['TIMEOUT', 'TIMEOUT']);
  });

  it('after close() nothing more is sent', async () => {
    const sink = await testEndpoint();
    const endpoint = endpointFor(sink.url);
    await endpoint.post(structured(), never);
    endpoint.close();
    expect(await attemptError(endpoint.post(structured(), never))).toMatchObject({ kind: 'transient' });
    expect(sink.received).toHaveLength(1);
  });
});
