import { describe, expect, it, vi } from 'vitest';
import { CircuitBreaker } from '../../../lib/delivery/breaker';
import type { EndpointDelivery, RequestSource } from '../../../lib/delivery/delivery';
import { DeliveryAttemptError } from '../../../lib/errors';
import { deliver, deliveryFor, eventBody, later, never, pastHalfOpen } from '../../support/delivery';
import { type TestEndpoint, testEndpoint } from '../../support/endpoints';

/** A breaker on a clock the test moves by hand. */
function breakerAt(threshold: number, halfOpenMs: number) {
  const clock = { now: 1_000 };
  return { breaker: new CircuitBreaker(threshold, halfOpenMs, () => clock.now), clock };
}

const transient = new DeliveryAttemptError('transient', 'sink', 'HTTP 503', 503);

describe('CircuitBreaker (on its own clock)', () => {
  it('stays closed below the threshold, opens at it, and lets one trial at a time through after halfOpenMs', () => {
    const { breaker, clock } = breakerAt(2, 100);
    breaker.failed();
    expect(breaker.allow()).toBe(true);
    breaker.failed();
    expect([breaker.refuses(), breaker.allow()]).toEqual([true, false]);
    clock.now += 99;
    expect(breaker.allow()).toBe(false);
    clock.now += 1;
    // Asking does not take the trial; allow() does, and a second caller waits for it.
    expect(breaker.refuses()).toBe(false);
    expect(breaker.allow()).toBe(true);
    expect([breaker.refuses(), breaker.allow()]).toEqual([true, false]);
  });

  it('a failed trial counts and opens again for halfOpenMs from its failure; a success closes', () => {
    const { breaker, clock } = breakerAt(1, 100);
    breaker.failed();
    clock.now += 100;
    expect(breaker.allow()).toBe(true);
    expect(breaker.failedTrials).toBe(0);
    clock.now += 50;
    breaker.failed();
    expect(breaker.failedTrials).toBe(1);
    clock.now += 99;
    expect(breaker.allow()).toBe(false);
    clock.now += 1;
    expect(breaker.allow()).toBe(true);
    breaker.succeeded();
    expect([breaker.refuses(), breaker.allow(), breaker.allow()]).toEqual([false, true, true]);
  });

  it('an abandoned trial frees the next trial without closing the circuit', () => {
    const { breaker, clock } = breakerAt(1, 100);
    breaker.failed();
    clock.now += 100;
    expect(breaker.allow()).toBe(true);
    breaker.abandoned();
    expect(breaker.allow()).toBe(true);
    expect(breaker.allow()).toBe(false);
  });

  it('with threshold 0 never opens', () => {
    const { breaker } = breakerAt(0, 100);
    for (let i = 0; i < 5; i++) breaker.failed();
    expect([breaker.allow(), breaker.refuses(), breaker.holdUntil(Number.MAX_SAFE_INTEGER, 0)]).toEqual([
      true,
      false,
      undefined,
    ]);
  });

  it('holds a queued request for the trial, or for the half-open time when its deadline is later', () => {
    const { breaker, clock } = breakerAt(1, 100);
    expect(breaker.holdUntil(clock.now + 1000, 0)).toBeUndefined();
    breaker.failed();
    const openUntil = clock.now + 100;
    expect(breaker.holdUntil(openUntil + 1, 0)).toBe(openUntil);
    // Its deadline comes first: nothing to wait for, it fails circuit-open.
    expect(breaker.holdUntil(openUntil, 0)).toBeUndefined();
    clock.now = openUntil;
    expect(breaker.holdUntil(openUntil + 1, 0)).toBeUndefined();
    breaker.allow();
    expect(breaker.holdUntil(openUntil + 1000, 0)).toBe('trial');
    breaker.failed();
    // Queued before that trial failed: it does not wait for another.
    expect(breaker.holdUntil(clock.now + 1000, 0)).toBeUndefined();
    expect(breaker.holdUntil(clock.now + 1000, 1)).toBe(clock.now + 100);
  });

  it('failedWith: a transient or unknown error counts; a cut or unsent attempt abandons; an answer closes', () => {
    const opened = () => {
      const { breaker, clock } = breakerAt(1, 100);
      breaker.failed();
      clock.now += 100;
      expect(breaker.allow()).toBe(true);
      return breaker;
    };
    const counted = opened();
    counted.failedWith(transient);
    expect([counted.failedTrials, counted.allow()]).toEqual([1, false]);
    const unknown = opened();
    unknown.failedWith(new Error('cannot sign'));
    expect([unknown.failedTrials, unknown.allow()]).toEqual([1, false]);
    const cut = opened();
    cut.failedWith(new DeliveryAttemptError('aborted', 'sink', 'deadline', 200));
    const unsent = opened();
    unsent.failedWith(
      new DeliveryAttemptError('unauthorized', 'sink', 'bad secret', undefined, 'SIGNING_SECRET_INVALID'),
    );
    for (const breaker of [cut, unsent]) {
      // The trial ended, the circuit is still open: one more trial, not a closed circuit.
      expect([breaker.failedTrials, breaker.allow(), breaker.allow()]).toEqual([0, true, false]);
    }
    const answered = opened();
    answered.failedWith(new DeliveryAttemptError('endpoint-error', 'sink', 'HTTP 404', 404));
    expect([answered.refuses(), answered.allow(), answered.allow()]).toEqual([false, true, true]);
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
