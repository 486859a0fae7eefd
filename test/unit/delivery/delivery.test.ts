import http from 'node:http';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import {
  type DeliveryResult,
  EndpointDelivery,
  type RequestSource,
  type RetryOptions,
  retryDelayMs,
} from '../../../lib/delivery/delivery';
import { authHeaders, CONTENT_TYPE, type Credential, Endpoint } from '../../../lib/delivery/endpoint';
import { DeliveryAttemptError } from '../../../lib/errors';
import { idempotencyKey } from '../../../lib/event/event';
import { closedPortUrl, listenForTest, type TestEndpoint, testEndpoint } from '../../support/endpoints';
import { cloudEvent } from '../../support/events';

const defaults: RetryOptions = {
  maxAttempts: 3,
  baseMs: 1,
  maxMs: 10,
  breakerThreshold: 0,
  breakerHalfOpenMs: 5000,
  maxConnections: 8,
};

function deliveryFor(
  url: string,
  options: Partial<RetryOptions> = {},
  random: () => number = () => 0,
  timeoutMs = 2000,
): EndpointDelivery {
  const merged = { ...defaults, ...options };
  const endpoint = new Endpoint({ name: 'sink', url: new URL(url), timeoutMs, maxConnections: merged.maxConnections });
  const delivery = new EndpointDelivery(endpoint, merged, random);
  onTestFinished(() => delivery.close());
  return delivery;
}

function eventBody(id: string): { body: Buffer; key: string } {
  return { body: Buffer.from(JSON.stringify(cloudEvent(id))), key: idempotencyKey('urn:test:orders', id) };
}

const never = new AbortController().signal;
const later = () => Date.now() + 60_000;

function deliver(delivery: EndpointDelivery, id = 'evt-1', signal = never, deadlineAt = later()) {
  const { body, key } = eventBody(id);
  const request = { headers: { 'content-type': CONTENT_TYPE, 'idempotency-key': key }, body };
  return delivery.deliver({ prepare: () => request }, signal, deadlineAt);
}

describe('EndpointDelivery retries', () => {
  it('retries a transient failure up to maxAttempts, then reports the last failure', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    const result = await deliver(deliveryFor(sink.url, { maxAttempts: 3 }));
    expect(result).toEqual({ ok: false, endpoint: 'sink', kind: 'transient', status: 503, attempts: 3 });
    expect(sink.received).toHaveLength(3);
  });

  it('succeeds on a later attempt after 500, reset and 429', async () => {
    const answers = [{ status: 500 }, { reset: true as const }, { status: 429 }, { status: 202 }];
    const sink = await testEndpoint((_, attempt) => answers[attempt - 1] ?? { status: 500 });
    const result = await deliver(deliveryFor(sink.url, { maxAttempts: 4 }));
    expect(result).toMatchObject({ ok: true, endpoint: 'sink', attempts: 4, status: 202 });
    expect(sink.received).toHaveLength(4);
    expect(new Set(sink.received.map((request) => request.headers['idempotency-key'])).size).toBe(1);
  });

  it('maxAttempts 1 never retries', async () => {
    const sink = await testEndpoint(() => ({ status: 500 }));
    expect(await deliver(deliveryFor(sink.url, { maxAttempts: 1 }))).toMatchObject({ ok: false, attempts: 1 });
    expect(sink.received).toHaveLength(1);
  });

  it('does not retry a rejection or a redirect', async () => {
    const rejecting = await testEndpoint(() => ({ status: 422 }));
    expect(await deliver(deliveryFor(rejecting.url, { maxAttempts: 5 }))).toEqual({
      ok: false,
      endpoint: 'sink',
      kind: 'rejected',
      status: 422,
      attempts: 1,
    });
    expect(rejecting.received).toHaveLength(1);
    const redirecting = await testEndpoint(() => ({ status: 308, headers: { location: rejecting.url } }));
    expect(await deliver(deliveryFor(redirecting.url, { maxAttempts: 5 }))).toMatchObject({
      ok: false,
      kind: 'redirect',
      status: 308,
      attempts: 1,
    });
    expect(redirecting.received).toHaveLength(1);
    expect(rejecting.received).toHaveLength(1);
  });

  it('reports a timeout and a refused connection as transient with their code', async () => {
    const hanging = await testEndpoint(() => ({ hang: true }));
    expect(await deliver(deliveryFor(hanging.url, { maxAttempts: 2 }, () => 0, 100))).toMatchObject({
      ok: false,
      kind: 'transient',
      error: 'TIMEOUT',
      attempts: 2,
    });
    expect(hanging.received).toHaveLength(2);
    expect(await deliver(deliveryFor(await closedPortUrl(), { maxAttempts: 2 }))).toMatchObject({
      ok: false,
      kind: 'transient',
      error: 'ECONNREFUSED',
      attempts: 2,
    });
  });

  it('waits a full-jitter backoff drawn from the injected random between attempts', async () => {
    const arrivals: number[] = [];
    const sink = await testEndpoint(() => {
      arrivals.push(performance.now());
      return { status: 500 };
    });
    const random = vi.fn(() => 0.5);
    await deliver(deliveryFor(sink.url, { maxAttempts: 3, baseMs: 80, maxMs: 1000 }, random));
    // One draw per wait: after attempt 1 (half of 80 ms) and after attempt 2 (half of 160 ms); none after the last.
    expect(random).toHaveBeenCalledTimes(2);
    const [first, second, third] = arrivals as [number, number, number];
    // Lower bounds only (a timer may fire up to a millisecond early against performance.now()).
    expect(second - first).toBeGreaterThanOrEqual(40 - 2);
    expect(third - second).toBeGreaterThanOrEqual(80 - 2);
  });

  it('honours Retry-After: the next attempt comes no sooner than it asked', async () => {
    const arrivals: number[] = [];
    const sink = await testEndpoint((_, attempt) => {
      arrivals.push(performance.now());
      return attempt === 1 ? { status: 503, headers: { 'retry-after': '1' } } : { status: 200 };
    });
    const result = await deliver(deliveryFor(sink.url, { maxAttempts: 2 }));
    expect(result).toMatchObject({ ok: true, attempts: 2 });
    const [first, second] = arrivals as [number, number];
    expect(second - first).toBeGreaterThanOrEqual(1000 - 2);
  });

  it('gives up at once when Retry-After would pass the deadline, reporting retryAfterS', async () => {
    const sink = await testEndpoint(() => ({ status: 429, headers: { 'retry-after': '120' } }));
    const result = await deliver(deliveryFor(sink.url, { maxAttempts: 5 }), 'evt-1', never, Date.now() + 5000);
    expect(result).toEqual({
      ok: false,
      endpoint: 'sink',
      kind: 'transient',
      status: 429,
      attempts: 1,
      retryAfterS: 120,
    });
    expect(sink.received).toHaveLength(1);
  });

  it('gives up at once when the backoff itself would pass the deadline', { timeout: 5000 }, async () => {
    const sink = await testEndpoint(() => ({ status: 500 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 5, baseMs: 20_000, maxMs: 20_000 }, () => 0.99);
    const result = await deliver(delivery, 'evt-1', never, Date.now() + 3000);
    expect(result).toMatchObject({ ok: false, kind: 'transient', status: 500, attempts: 1 });
    expect(sink.received).toHaveLength(1);
  });

  it('stops waiting when the signal aborts mid-backoff', { timeout: 5000 }, async () => {
    const sink = await testEndpoint(() => ({ status: 500 }));
    const controller = new AbortController();
    // The jitter is drawn just before the backoff starts: abort right after that, while the delivery sleeps.
    const random = () => {
      setImmediate(() => controller.abort());
      return 0.99;
    };
    const delivery = deliveryFor(sink.url, { maxAttempts: 3, baseMs: 30_000, maxMs: 30_000 }, random);
    const result = await deliver(delivery, 'evt-1', controller.signal);
    expect(result).toMatchObject({ ok: false, kind: 'transient', status: 500, attempts: 1 });
    expect(sink.received).toHaveLength(1);
  });

  it('an abort while a request is in flight reports aborted', { timeout: 5000 }, async () => {
    const sink = await testEndpoint(() => ({ hang: true }));
    const controller = new AbortController();
    const pending = deliver(
      deliveryFor(sink.url, {}, () => 0, 30_000),
      'evt-1',
      controller.signal,
    );
    await sink.waitForRequests(1);
    controller.abort();
    expect(await pending).toMatchObject({ ok: false, kind: 'aborted', attempts: 1 });
  });
});

describe('EndpointDelivery circuit breaker', () => {
  it('opens after the threshold of consecutive transient failures and then fails fast', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 1, breakerThreshold: 3 });
    for (let i = 0; i < 3; i++) expect(await deliver(delivery, `e${i}`)).toMatchObject({ kind: 'transient' });
    expect(sink.received).toHaveLength(3);
    for (let i = 3; i < 6; i++) {
      // A deadline before the half-open time: nothing to wait for.
      expect(await deliver(delivery, `e${i}`, never, Date.now() + 1000)).toEqual({
        ok: false,
        endpoint: 'sink',
        kind: 'circuit-open',
        error: 'CIRCUIT_OPEN',
        attempts: 1,
      });
    }
    expect(sink.received).toHaveLength(3);
  });

  it('counts retries of one delivery towards the threshold', async () => {
    const sink = await testEndpoint(() => ({ reset: true }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 5, breakerThreshold: 2 });
    // The third attempt finds the breaker open: it is not retried further.
    expect(await deliver(delivery, 'evt-1', never, Date.now() + 1000)).toMatchObject({
      ok: false,
      kind: 'circuit-open',
      attempts: 3,
    });
    expect(sink.received).toHaveLength(2);
  });

  it('is disabled with threshold 0', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 1, breakerThreshold: 0 });
    for (let i = 0; i < 12; i++) expect(await deliver(delivery, `e${i}`)).toMatchObject({ kind: 'transient' });
    expect(sink.received).toHaveLength(12);
  });

  it('does not count rejections, and a success resets the count', async () => {
    const answers = [503, 503, 404, 404, 200, 503, 503, 503];
    const sink = await testEndpoint(() => ({ status: answers[sink.received.length - 1] ?? 200 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 1, breakerThreshold: 3 });
    for (let i = 0; i < answers.length; i++) await deliver(delivery, `e${i}`);
    expect(sink.received).toHaveLength(answers.length);
    expect(await deliver(delivery, 'last', never, Date.now() + 1000)).toMatchObject({ kind: 'circuit-open' });
  });

  it('lets a trial request through after breakerHalfOpenMs and closes on success', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 1, breakerThreshold: 2, breakerHalfOpenMs: 100 });
    await deliver(delivery, 'a');
    await deliver(delivery, 'b');
    expect(await deliver(delivery, 'c', never, Date.now() + 50)).toMatchObject({ kind: 'circuit-open' });
    sink.respond(() => ({ status: 200 }));
    await vi.waitFor(
      async () => {
        expect(await deliver(delivery, 'probe')).toMatchObject({ ok: true });
      },
      { timeout: 5000, interval: 50 },
    );
    expect(await deliver(delivery, 'd')).toMatchObject({ ok: true, attempts: 1 });
  });
});

/** A server that holds every request until the test releases it, and records the most it held at once. */
async function gatedServer() {
  const held: http.ServerResponse[] = [];
  const state = { arrived: 0, maxInFlight: 0 };
  const srv = http.createServer((req, res) => {
    req.resume();
    state.arrived++;
    held.push(res);
    state.maxInFlight = Math.max(state.maxInFlight, held.length);
  });
  const url = await listenForTest(srv);
  return {
    url,
    state,
    held,
    release() {
      held.shift()?.writeHead(200).end();
    },
  };
}

describe('EndpointDelivery connection bound', () => {
  it('never has more than maxConnections requests in flight', { timeout: 10_000 }, async () => {
    const gate = await gatedServer();
    const delivery = deliveryFor(gate.url, { maxConnections: 3 }, () => 0, 30_000);
    const results = Array.from({ length: 10 }, (_, i) => deliver(delivery, `e${i}`));
    for (let released = 0; released < 10; released++) {
      const expected = Math.min(3, 10 - released);
      await vi.waitFor(() => expect(gate.held.length).toBe(expected), { timeout: 5000, interval: 5 });
      expect(gate.state.arrived).toBe(released + expected);
      gate.release();
    }
    expect((await Promise.all(results)).every((result) => result.ok)).toBe(true);
    expect(gate.state.maxInFlight).toBe(3);
  });

  it('a request waiting for a connection does not run its timeout', { timeout: 10_000 }, async () => {
    const sink = await testEndpoint(() => ({ status: 200, delayMs: 200 }));
    // Twelve requests in one lane take ~2.4 s, longer than the 2 s timeout of each (which leaves each 1.8 s of room).
    const delivery = deliveryFor(sink.url, { maxConnections: 1, maxAttempts: 1 }, () => 0, 2000);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => deliver(delivery, `e${i}`)));
    expect(results.map((result) => result.ok)).toEqual(results.map(() => true));
  });

  it('an abort releases requests still waiting for a connection, unsent', { timeout: 5000 }, async () => {
    const sink = await testEndpoint(() => ({ hang: true }));
    const controller = new AbortController();
    const delivery = deliveryFor(sink.url, { maxConnections: 1 }, () => 0, 30_000);
    const results = [deliver(delivery, 'a', controller.signal), deliver(delivery, 'b', controller.signal)];
    await sink.waitForRequests(1);
    controller.abort();
    for (const result of await Promise.all(results)) expect(result).toMatchObject({ ok: false, kind: 'aborted' });
    expect(sink.received).toHaveLength(1);
  });
});

describe('EndpointDelivery rate limit', () => {
  it('records beyond the rate wait for a token; the deadline wins over the wait', async () => {
    const sink = await testEndpoint();
    // One request per 100 s: after the first, the others can only wait.
    const delivery = deliveryFor(sink.url, { rateLimitPerSecond: 0.01 });
    expect(await deliver(delivery, 'first')).toMatchObject({ ok: true });
    const controller = new AbortController();
    const waiting = [deliver(delivery, 'second', controller.signal), deliver(delivery, 'third', controller.signal)];
    controller.abort();
    expect(await Promise.all(waiting)).toEqual([
      { ok: false, endpoint: 'sink', kind: 'aborted', error: 'RATE_LIMIT_WAIT', attempts: 1 },
      { ok: false, endpoint: 'sink', kind: 'aborted', error: 'RATE_LIMIT_WAIT', attempts: 1 },
    ]);
    expect(sink.received.map((request) => request.eventId)).toEqual(['first']);
  });
});

describe('retryDelayMs', () => {
  it('is full jitter over base·2^(attempt−1), capped at max', () => {
    const options = { baseMs: 100, maxMs: 2000 };
    expect(retryDelayMs(1, options, () => 0)).toBe(0);
    expect(retryDelayMs(1, options, () => 0.999_999)).toBe(99);
    expect(retryDelayMs(2, options, () => 0.5)).toBe(100);
    expect(retryDelayMs(3, options, () => 0.5)).toBe(200);
    expect(retryDelayMs(10, options, () => 0.5)).toBe(1000);
  });

  it('always lies in [0, min(max, base·2^(n−1))) (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 60_000 }),
        fc.integer({ min: 0, max: 300_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, baseMs, extra, r) => {
          const maxMs = baseMs + extra;
          const delay = retryDelayMs(attempt, { baseMs, maxMs }, () => r);
          expect(Number.isInteger(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThan(Math.min(maxMs, baseMs * 2 ** (attempt - 1)));
        },
      ),
    );
  });
});

/** Sends the breaker's trial (the second request the sink sees), which hangs, and cuts it with the deadline signal. */
async function trialCutByDeadline(delivery: EndpointDelivery, sink: TestEndpoint) {
  const controller = new AbortController();
  const trial = deliver(delivery, 'trial', controller.signal);
  await sink.waitForRequests(2);
  controller.abort();
  expect(await trial).toMatchObject({ kind: 'aborted' });
}

describe('EndpointDelivery circuit breaker trials (issue 9, defect 1)', () => {
  it('a half-open trial cut by the deadline ends the trial: the recovered endpoint gets the next delivery', async () => {
    let mode: 'fail' | 'hang' | 'ok' = 'fail';
    const sink = await testEndpoint(() =>
      mode === 'fail' ? { status: 503 } : mode === 'hang' ? { hang: true } : { status: 200 },
    );
    // halfOpenMs 1: any later delivery is past the half-open period, so the test never waits on a clock.
    const delivery = deliveryFor(
      sink.url,
      { maxAttempts: 1, breakerThreshold: 1, breakerHalfOpenMs: 1 },
      () => 0,
      30_000,
    );
    expect(await deliver(delivery, 'a')).toMatchObject({ kind: 'transient' });
    // The breaker reads Date.now(): the 1 ms half-open period must be over before the trial.
    const openedAt = Date.now();
    await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(openedAt + 1), { interval: 1 });
    mode = 'hang';
    await trialCutByDeadline(delivery, sink);
    mode = 'ok';
    expect(await deliver(delivery, 'next')).toMatchObject({ ok: true, attempts: 1 });
    expect(sink.received.map((request) => request.eventId)).toEqual(['a', 'trial', 'next']);
  });
});

describe('EndpointDelivery on 401/403 (issue 9, defect 4)', () => {
  const stale = { kind: 'bearer', token: 'stale' } as const;
  /** A request whose credential `refresh` renews, as lib/subscription/request.ts builds it. */
  const withCredential = (credential: Credential, renew: () => Promise<Credential | undefined>): RequestSource => {
    const { body, key } = eventBody('evt-1');
    let current: Credential | undefined = credential;
    return {
      prepare: () => ({ headers: { 'idempotency-key': key, ...authHeaders(current, body) }, body }),
      refresh: async () => {
        const fresh = await renew();
        if (fresh) current = fresh;
        return fresh !== undefined;
      },
    };
  };

  it('refreshes the credential once and retries at once; still refused, it fails unauthorized', async () => {
    const sink = await testEndpoint(() => ({ status: 403 }));
    let refreshes = 0;
    const refresh = async () => {
      refreshes++;
      return { kind: 'bearer', token: 'fresh' } as const;
    };
    const delivery = deliveryFor(sink.url, { maxAttempts: 5 });
    const result = await delivery.deliver(withCredential(stale, refresh), never, later());
    expect(result).toEqual({
      ok: false,
      endpoint: 'sink',
      kind: 'unauthorized',
      status: 403,
      error: 'CREDENTIALS_REFUSED',
      attempts: 2,
    });
    expect(refreshes).toBe(1);
    expect(sink.received.map((request) => request.headers.authorization)).toEqual(['Bearer stale', 'Bearer fresh']);
  });

  it('a refresh that fails ends the delivery as unauthorized, saying why', async () => {
    const sink = await testEndpoint(() => ({ status: 401 }));
    const request = withCredential(stale, async () => {
      throw new Error('ENDPOINT_CREDENTIALS: cannot read the bearer token');
    });
    const result = await deliveryFor(sink.url).deliver(request, never, later());
    expect(result).toMatchObject({ ok: false, kind: 'unauthorized', status: 401, attempts: 1 });
    expect(result.ok === false && result.error).toContain('CREDENTIALS_REFRESH_FAILED: ENDPOINT_CREDENTIALS');
    expect(sink.received).toHaveLength(1);
  });

  it('other 4xx are not retried and do not open the breaker', async () => {
    const sink = await testEndpoint(() => ({ status: 404 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 5, breakerThreshold: 1 });
    for (const id of ['a', 'b', 'c']) {
      expect(await deliver(delivery, id)).toMatchObject({ kind: 'endpoint-error', status: 404, attempts: 1 });
    }
    expect(sink.received).toHaveLength(3);
  });
});

describe('EndpointDelivery half-open queue (review finding 3)', () => {
  async function openBreaker(mode: { status: number }) {
    const sink = await testEndpoint(() => ({ status: mode.status }));
    // 250 ms, not 1: once the trial fails, the queued jobs must meet a breaker that is open again, even on a loaded machine.
    const delivery = deliveryFor(sink.url, { maxAttempts: 1, breakerThreshold: 1, breakerHalfOpenMs: 250 }, () => 0);
    expect(await deliver(delivery, 'a')).toMatchObject({ kind: 'transient' });
    await pastHalfOpen(Date.now(), 250);
    return { sink, delivery };
  }

  it('jobs queued behind a trial wait for it and are all delivered when it succeeds', async () => {
    const mode = { status: 503 };
    const { sink, delivery } = await openBreaker(mode);
    mode.status = 200;
    const results = await Promise.all(['t', 'b', 'c', 'd'].map((id) => deliver(delivery, id)));
    expect(results.map((result) => result.ok)).toEqual([true, true, true, true]);
    expect(sink.received).toHaveLength(5);
  });

  it('jobs queued behind a trial fail circuit-open, unsent, when the trial fails', async () => {
    const { sink, delivery } = await openBreaker({ status: 503 });
    const results = await Promise.all(['t', 'b', 'c'].map((id) => deliver(delivery, id)));
    expect(results.map((result) => !result.ok && result.kind)).toEqual(['transient', 'circuit-open', 'circuit-open']);
    expect(sink.received).toHaveLength(2);
  });

  it('a delivery whose deadline is after the half-open time waits for it and probes', async () => {
    const mode = { status: 503 };
    const sink = await testEndpoint(() => ({ status: mode.status }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 1, breakerThreshold: 1, breakerHalfOpenMs: 200 }, () => 0);
    expect(await deliver(delivery, 'a')).toMatchObject({ kind: 'transient' });
    mode.status = 200;
    expect(await deliver(delivery, 'b', never, Date.now() + 10_000)).toMatchObject({ ok: true, attempts: 1 });
    expect(sink.received.map((request) => request.eventId)).toEqual(['a', 'b']);
  });

  it('a job held by an open circuit ends aborted when the deadline signal fires', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 1, breakerThreshold: 1, breakerHalfOpenMs: 60_000 });
    expect(await deliver(delivery, 'a')).toMatchObject({ kind: 'transient' });
    const controller = new AbortController();
    const held = deliver(delivery, 'b', controller.signal, Date.now() + 120_000);
    controller.abort();
    expect(await held).toMatchObject({ ok: false, kind: 'aborted' });
    expect(sink.received).toHaveLength(1);
  });
});

describe('EndpointDelivery breaker and failures before sending (hostile review)', () => {
  it('a half-open trial that fails before sending leaves the breaker open: nothing told it the endpoint is up', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 1, breakerThreshold: 2, breakerHalfOpenMs: 300 }, () => 0);
    expect(await deliver(delivery, 'a')).toMatchObject({ kind: 'transient' });
    expect(await deliver(delivery, 'b')).toMatchObject({ kind: 'transient' });
    await pastHalfOpen(Date.now(), 300);
    // As request.ts throws for a malformed Standard Webhooks secret: the trial ends before anything is sent.
    const code = 'SIGNING_SECRET_INVALID signing.secrets[0] (ssm:/whsec)';
    const unsigned: RequestSource = {
      prepare: () => {
        throw new DeliveryAttemptError('unauthorized', 'sink', 'not a whsec_ secret', undefined, code);
      },
    };
    expect(await delivery.deliver(unsigned, never, later())).toMatchObject({ kind: 'unauthorized', error: code });
    // The next delivery is the trial; it fails, so the breaker opens again (not one failure of a fresh count).
    expect(await deliver(delivery, 'c')).toMatchObject({ kind: 'transient', status: 503 });
    expect(await deliver(delivery, 'd', never, Date.now() + 100)).toMatchObject({ kind: 'circuit-open' });
    expect(sink.received.map((request) => request.eventId)).toEqual(['a', 'b', 'c']);
  });
});

/** Waits (a condition, not a sleep) until the breaker's half-open time, read on Date.now(), has passed. */
async function pastHalfOpen(openedAt: number, halfOpenMs: number) {
  await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(openedAt + halfOpenMs), { timeout: 5000, interval: 5 });
}

/** One connection, no retry, a breaker that opens on the first failure for 200 ms. */
const oneLaneBreaker = { maxConnections: 1, maxAttempts: 1, breakerThreshold: 1, breakerHalfOpenMs: 200 };

describe('EndpointDelivery lane and breaker together (issue 9, mutation testing)', () => {
  it('with one connection, a job queued behind a failure that opens the breaker fails unsent; the lane is free after', async () => {
    const sink = await testEndpoint((request) => ({ status: request.eventId === 'a' ? 503 : 200 }));
    const delivery = deliveryFor(sink.url, oneLaneBreaker);
    const openedAt = Date.now();
    // b's deadline comes before the half-open time: it has nothing to wait for.
    const results = await Promise.all([deliver(delivery, 'a'), deliver(delivery, 'b', never, Date.now() + 150)]);
    expect(results.map((result) => !result.ok && result.kind)).toEqual(['transient', 'circuit-open']);
    expect(sink.received.map((request) => request.eventId)).toEqual(['a']);
    await pastHalfOpen(openedAt, 200);
    expect(await deliver(delivery, 'c')).toMatchObject({ ok: true, attempts: 1 });
  });

  it('a job queued before the breaker opened waits for the half-open time and probes', async () => {
    const sink = await testEndpoint((request) => ({ status: request.eventId === 'a' ? 503 : 200 }));
    const delivery = deliveryFor(sink.url, oneLaneBreaker);
    // A success first: it leaves no trial behind that the next failure could count as failed.
    expect(await deliver(delivery, 'ok')).toMatchObject({ ok: true });
    const results = await Promise.all([deliver(delivery, 'a'), deliver(delivery, 'b')]);
    expect(results.map((result) => result.ok)).toEqual([false, true]);
    expect(sink.received.map((request) => request.eventId)).toEqual(['ok', 'a', 'b']);
  });

  it('a job queued behind the very first failure waits for the half-open time and probes', async () => {
    const sink = await testEndpoint((request) => ({ status: request.eventId === 'a' ? 503 : 200 }));
    const delivery = deliveryFor(sink.url, oneLaneBreaker);
    const both = await Promise.all([deliver(delivery, 'a'), deliver(delivery, 'b')]);
    expect(both.map((result) => result.ok)).toEqual([false, true]);
  });

  it('a 4xx answer shows the endpoint is up: it breaks the run of consecutive failures', async () => {
    const answers: Record<string, number> = { a: 503, b: 404, c: 503, d: 200 };
    const sink = await testEndpoint((request) => ({ status: answers[request.eventId ?? ''] ?? 500 }));
    const delivery = deliveryFor(sink.url, { maxAttempts: 1, breakerThreshold: 2 });
    for (const id of ['a', 'b', 'c']) await deliver(delivery, id, never, Date.now() + 1000);
    expect(await deliver(delivery, 'd', never, Date.now() + 1000)).toMatchObject({ ok: true });
  });

  it('an answer that closes the breaker while it is open lets the next job go at once', async () => {
    let answerB!: () => void;
    const bMayAnswer = new Promise<void>((resolve) => {
      answerB = resolve;
    });
    const sink = await testEndpoint((request) =>
      request.eventId === 'a'
        ? { status: 503 }
        : request.eventId === 'b'
          ? { status: 404, after: bMayAnswer }
          : { status: 200 },
    );
    const delivery = deliveryFor(sink.url, {
      maxConnections: 2,
      maxAttempts: 1,
      breakerThreshold: 1,
      breakerHalfOpenMs: 60_000,
    });
    const b = deliver(delivery, 'b');
    await sink.waitForRequests(1);
    expect(await deliver(delivery, 'a')).toMatchObject({ kind: 'transient' });
    answerB();
    expect(await b).toMatchObject({ kind: 'endpoint-error' });
    // The 404 closed the breaker: c, due long after the half-open time, is sent now rather than held for it.
    expect(await deliver(delivery, 'c', never, Date.now() + 120_000)).toMatchObject({ ok: true, attempts: 1 });
  });

  it('a trial cut by the deadline leaves the breaker open: the next trial goes alone', async () => {
    let mode: 'fail' | 'hang' = 'fail';
    const sink = await testEndpoint(() => (mode === 'fail' ? { status: 503 } : { hang: true }));
    const delivery = deliveryFor(
      sink.url,
      { maxAttempts: 1, breakerThreshold: 1, breakerHalfOpenMs: 200 },
      () => 0,
      30_000,
    );
    let openedAt = Date.now();
    expect(await deliver(delivery, 'a')).toMatchObject({ kind: 'transient' });
    await pastHalfOpen(openedAt, 200);
    mode = 'hang';
    await trialCutByDeadline(delivery, sink);
    mode = 'fail';
    openedAt = Date.now();
    const results = await Promise.all([deliver(delivery, 'b'), deliver(delivery, 'c', never, openedAt + 150)]);
    expect(results.map((result) => !result.ok && result.kind)).toEqual(['transient', 'circuit-open']);
    expect(sink.received.map((request) => request.eventId)).toEqual(['a', 'trial', 'b']);
  });

  it('thousands of jobs queued behind a failed trial all fail circuit-open, unsent', { timeout: 20_000 }, async () => {
    let failTrial!: () => void;
    const trialMayAnswer = new Promise<void>((resolve) => {
      failTrial = resolve;
    });
    const sink = await testEndpoint((request) =>
      request.eventId === 'trial' ? { status: 503, after: trialMayAnswer } : { status: 503 },
    );
    // A half-open time long enough that the trial's failure keeps the breaker open while the queue drains.
    const options = { maxConnections: 1, maxAttempts: 1, breakerThreshold: 1, breakerHalfOpenMs: 2000 };
    const delivery = deliveryFor(sink.url, options, () => 0, 30_000);
    const openedAt = Date.now();
    expect(await deliver(delivery, 'a')).toMatchObject({ kind: 'transient' });
    await pastHalfOpen(openedAt, 2000);
    const trial = deliver(delivery, 'trial');
    await sink.waitForRequests(2);
    const kinds = new Map<string, number>();
    const { body } = eventBody('queued');
    const count = 20_000;
    let left = count;
    const allSettled = new Promise<void>((resolve) => {
      for (let i = 0; i < count; i++) {
        delivery.submit({ prepare: () => ({ headers: {}, body }) }, never, later(), (result) => {
          const kind = result.ok ? 'ok' : result.kind;
          kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
          if (--left === 0) resolve();
        });
      }
    });
    // The trial fails: the whole queue is released in one pass (no recursion per job, which would overflow the stack).
    failTrial();
    expect(await trial).toMatchObject({ kind: 'transient' });
    await allSettled;
    expect(Object.fromEntries(kinds)).toEqual({ 'circuit-open': count });
    expect(sink.received).toHaveLength(2);
  });
});

describe('EndpointDelivery rate limit with the lane (issue 9, mutation testing)', () => {
  it('a job whose rate wait the deadline cut frees its connection: the next one waits its turn and is sent', async () => {
    const sink = await testEndpoint();
    // One token a second, one saved up; one connection.
    const delivery = deliveryFor(sink.url, { rateLimitPerSecond: 1, maxConnections: 1 });
    expect(await deliver(delivery, 'first')).toMatchObject({ ok: true });
    const controller = new AbortController();
    const cut = deliver(delivery, 'cut', controller.signal);
    controller.abort();
    expect(await cut).toMatchObject({ ok: false, kind: 'aborted', error: 'RATE_LIMIT_WAIT' });
    expect(await deliver(delivery, 'next')).toMatchObject({ ok: true, attempts: 1 });
    expect(sink.received.map((request) => request.eventId)).toEqual(['first', 'next']);
  });

  it('a job that got its token while the breaker opened fails circuit-open and lets the queue move on', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    const options = { rateLimitPerSecond: 1, maxConnections: 1, maxAttempts: 1, breakerThreshold: 1 };
    const delivery = deliveryFor(sink.url, { ...options, breakerHalfOpenMs: 60_000 });
    // a takes the one saved token and opens the breaker; b and c each wait a second for a token, then find it open.
    const deadline = Date.now() + 30_000;
    const ids = ['a', 'b', 'c'];
    const results = await Promise.all(ids.map((id) => deliver(delivery, id, never, deadline)));
    expect(results.map((result) => !result.ok && result.kind)).toEqual(['transient', 'circuit-open', 'circuit-open']);
    expect(sink.received.map((request) => request.eventId)).toEqual(['a']);
  });
});

describe('EndpointDelivery credential refresh and the deadline (issue 9, mutation testing)', () => {
  /** A request with a stale bearer token whose refresh the test settles by hand. */
  function refreshedByHand() {
    const { body, key } = eventBody('evt-1');
    let token = 'stale';
    let settle!: { renew: () => void; fail: () => void };
    const refreshing = new Promise<boolean>((resolve, reject) => {
      settle = {
        renew: () => {
          token = 'fresh';
          resolve(true);
        },
        fail: () => reject(new Error('ENDPOINT_CREDENTIALS: cannot read the bearer token')),
      };
    });
    let markAsked!: () => void;
    const asked = new Promise<void>((resolve) => {
      markAsked = resolve;
    });
    const request: RequestSource = {
      prepare: () => ({ headers: { 'idempotency-key': key, authorization: `Bearer ${token}` }, body }),
      refresh: () => {
        markAsked();
        return refreshing;
      },
    };
    return { request, settle, refreshing, asked };
  }

  /** Submits one delivery and records every call of its callback (there must be exactly one). */
  function submitted(delivery: EndpointDelivery, request: RequestSource, signal: AbortSignal) {
    const calls: DeliveryResult[] = [];
    const first = new Promise<DeliveryResult>((resolve) => {
      delivery.submit(request, signal, later(), (result) => {
        calls.push(result);
        resolve(result);
      });
    });
    return { calls, first };
  }

  for (const outcome of ['renew', 'fail'] as const) {
    it(`the deadline during a refresh ends the delivery once, and a late refresh (${outcome}) sends nothing`, async () => {
      const sink = await testEndpoint(() => ({ status: 401 }));
      const delivery = deliveryFor(sink.url, { maxConnections: 1 });
      const { request, settle, refreshing, asked } = refreshedByHand();
      const controller = new AbortController();
      const { calls, first } = submitted(delivery, request, controller.signal);
      // The deadline comes while the refresh after the 401 runs.
      await asked;
      controller.abort();
      expect(await first).toEqual({
        ok: false,
        endpoint: 'sink',
        kind: 'unauthorized',
        status: 401,
        error: 'CREDENTIALS_REFUSED',
        attempts: 1,
      });
      settle[outcome]();
      await refreshing.catch(() => undefined);
      // A later delivery through the same lane is answered: anything the late refresh queued would have gone first.
      sink.respond(() => ({ status: 200 }));
      expect(await deliver(delivery, 'after')).toMatchObject({ ok: true });
      expect(calls).toHaveLength(1);
      expect(sink.received.map((received) => received.headers.authorization ?? received.eventId)).toEqual([
        'Bearer stale',
        'after',
      ]);
    });
  }

  it('refreshes credentials only on 401/403: a 503 is retried with the same credential', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    let refreshes = 0;
    const { body } = eventBody('evt-1');
    const request: RequestSource = {
      prepare: () => ({ headers: { authorization: 'Bearer same' }, body }),
      refresh: async () => {
        refreshes++;
        return true;
      },
    };
    const result = await deliveryFor(sink.url, { maxAttempts: 2 }).deliver(request, never, later());
    expect(result).toMatchObject({ ok: false, kind: 'transient', status: 503, attempts: 2 });
    expect(refreshes).toBe(0);
  });
});

describe('EndpointDelivery odds and ends (issue 9, mutation testing)', () => {
  it('a request that cannot be prepared fails transient with the reason, and is retried', async () => {
    const sink = await testEndpoint();
    let calls = 0;
    const request: RequestSource = {
      prepare: () => {
        calls++;
        throw new Error('cannot sign: the key is missing');
      },
    };
    const result = await deliveryFor(sink.url, { maxAttempts: 2 }).deliver(request, never, later());
    expect(result).toEqual({
      ok: false,
      endpoint: 'sink',
      kind: 'transient',
      error: 'cannot sign: the key is missing',
      attempts: 2,
    });
    expect(calls).toBe(2);
    expect(sink.received).toHaveLength(0);
  });

  it('a long queue on one connection sends every event exactly once', { timeout: 30_000 }, async () => {
    const sink = await testEndpoint();
    const delivery = deliveryFor(sink.url, { maxConnections: 1 }, () => 0, 30_000);
    // Past 1024 delivered the queue drops the delivered part of its array: the rest must stay in order, none twice.
    const ids = Array.from({ length: 1500 }, (_, i) => `e${i}`);
    const results = await Promise.all(ids.map((id) => deliver(delivery, id)));
    expect(results.every((result) => result.ok)).toBe(true);
    expect(sink.received.map((request) => request.eventId)).toEqual(ids);
  });

  it('is named after its endpoint, and close() closes its connections', async () => {
    const closed: Promise<void>[] = [];
    const srv = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end());
    });
    srv.on('connection', (socket) => closed.push(new Promise((resolve) => socket.once('close', () => resolve()))));
    const url = await listenForTest(srv);
    const delivery = deliveryFor(url);
    expect(delivery.name).toBe('sink');
    expect(await deliver(delivery)).toMatchObject({ ok: true });
    delivery.close();
    await Promise.all(closed);
    // Closed for good: a later delivery is not sent.
    expect(await deliver(delivery, 'late', never, Date.now() + 1000)).toMatchObject({ ok: false, kind: 'transient' });
  });
});
