import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { retryDelayMs, retryWait } from '../../../lib/delivery/retry';
import type { Job } from '../../../lib/delivery/types';
import { DeliveryAttemptError } from '../../../lib/errors';
import { deliver, deliveryFor, later, never } from '../../support/delivery';
import { closedPortUrl, testEndpoint } from '../../support/endpoints';

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

describe('retryWait', () => {
  const options = {
    maxAttempts: 3,
    baseMs: 100,
    maxMs: 1000,
    breakerThreshold: 0,
    breakerHalfOpenMs: 0,
    maxConnections: 1,
  };
  const job = (attempt: number, deadlineAt = later(), signal = never): Job => ({
    request: { prepare: () => ({ headers: {}, body: Buffer.alloc(0) }) },
    signal,
    deadlineAt,
    refreshed: false,
    attempt,
    trialsSeen: 0,
    resolve: () => undefined,
  });
  const error = (retryAfterMs?: number) =>
    new DeliveryAttemptError('transient', 'sink', 'HTTP 503', 503, undefined, retryAfterMs);

  it('waits the jittered backoff, or the Retry-After when longer', () => {
    expect(retryWait(job(2), 'transient', error(), options, () => 0.5)).toBe(100);
    expect(retryWait(job(2), 'transient', error(150), options, () => 0.5)).toBe(150);
    expect(retryWait(job(2), 'transient', error(50), options, () => 0.5)).toBe(100);
    expect(retryWait(job(1), 'transient', new Error('cannot sign'), options, () => 0.5)).toBe(50);
  });

  it('has none for a failure that is not transient, the last attempt, an aborted job or one past its deadline', () => {
    expect(retryWait(job(1), 'rejected', error(), options, () => 0)).toBeUndefined();
    expect(retryWait(job(3), 'transient', error(), options, () => 0)).toBeUndefined();
    expect(retryWait(job(1, later(), AbortSignal.abort()), 'transient', error(), options, () => 0)).toBeUndefined();
    expect(retryWait(job(1, Date.now() + 30_000), 'transient', error(60_000), options, () => 0)).toBeUndefined();
  });
});
