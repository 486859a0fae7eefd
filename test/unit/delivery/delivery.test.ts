import http from 'node:http';
import { describe, expect, it } from 'vitest';
import type { RequestSource } from '../../../lib/delivery/delivery';
import { CONTENT_TYPE } from '../../../lib/delivery/endpoint';
import { deliver, deliveryFor, eventBody, later, never } from '../../support/delivery';
import { listenForTest, testEndpoint } from '../../support/endpoints';

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

  it('jobs queued behind the request that opened the breaker fail circuit-open and let the queue move on', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    const options = { rateLimitPerSecond: 1, maxConnections: 1, maxAttempts: 1, breakerThreshold: 1 };
    const delivery = deliveryFor(sink.url, { ...options, breakerHalfOpenMs: 60_000 });
    // a takes the one saved token and opens the breaker; b and c, queued behind its one connection, are refused.
    const deadline = Date.now() + 30_000;
    const ids = ['a', 'b', 'c'];
    const results = await Promise.all(ids.map((id) => deliver(delivery, id, never, deadline)));
    expect(results.map((result) => !result.ok && result.kind)).toEqual(['transient', 'circuit-open', 'circuit-open']);
    expect(sink.received.map((request) => request.eventId)).toEqual(['a']);
  });

  it('a job the open breaker refuses fails at once, without first waiting for a rate token', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    // One token per 100 s, spent by a, whose 503 opens the breaker for a minute.
    const options = { rateLimitPerSecond: 0.01, maxAttempts: 1, breakerThreshold: 1, breakerHalfOpenMs: 60_000 };
    const delivery = deliveryFor(sink.url, options);
    expect(await deliver(delivery, 'a')).toMatchObject({ ok: false, kind: 'transient' });
    // b's deadline comes before the half-open time, so it is refused, not held. Had it queued for a token first, its
    // signal would cut that wait (aborted, RATE_LIMIT_WAIT) before any refusal.
    const result = await deliver(delivery, 'b', AbortSignal.timeout(2_000), Date.now() + 30_000);
    expect(result).toMatchObject({ ok: false, kind: 'circuit-open' });
    expect(sink.received.map((request) => request.eventId)).toEqual(['a']);
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

  it('a request prepared asynchronously (an OAuth token fetched first) is sent once ready; a failed one is retried', async () => {
    const sink = await testEndpoint();
    const { body, key } = eventBody('async-1');
    const ready: RequestSource = {
      prepare: async () => ({ headers: { 'content-type': CONTENT_TYPE, 'idempotency-key': key }, body }),
    };
    expect(await deliveryFor(sink.url).deliver(ready, never, later())).toMatchObject({ ok: true, attempts: 1 });
    expect(sink.received.map((request) => request.eventId)).toEqual(['async-1']);
    let calls = 0;
    const failing: RequestSource = {
      prepare: async () => {
        calls++;
        throw new Error('token endpoint refused the client');
      },
    };
    expect(await deliveryFor(sink.url, { maxAttempts: 2 }).deliver(failing, never, later())).toEqual({
      ok: false,
      endpoint: 'sink',
      kind: 'transient',
      error: 'token endpoint refused the client',
      attempts: 2,
    });
    expect(calls).toBe(2);
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
