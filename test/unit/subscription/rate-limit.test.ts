import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenBucket } from '../../../lib/subscription/rate-limit';
import { type TestEndpoint, testEndpoint } from '../../support/endpoints';
import { subscriberFor, validEvent } from '../../support/subscriptions';

describe('TokenBucket', () => {
  let now = 0;
  const clock = () => now;
  beforeEach(() => {
    now = 0;
    vi.useFakeTimers();
  });
  afterEach(() => vi.useRealTimers());
  const advance = async (ms: number) => {
    now += ms;
    await vi.advanceTimersByTimeAsync(ms);
  };

  it('grants a second worth of tokens at once, then one per 1/rate seconds, first come first served', async () => {
    const bucket = new TokenBucket(2, 2, clock);
    const never = new AbortController().signal;
    expect(bucket.take(never)).toBe(true);
    expect(bucket.take(never)).toBe(true);
    const order: string[] = [];
    const a = Promise.resolve(bucket.take(never)).then((ok) => order.push(`a:${ok}`));
    const b = Promise.resolve(bucket.take(never)).then((ok) => order.push(`b:${ok}`));
    await advance(499);
    expect(order).toEqual([]);
    await advance(1);
    await a;
    expect(order).toEqual(['a:true']);
    await advance(500);
    await b;
    expect(order).toEqual(['a:true', 'b:true']);
  });

  it('a wait longer than a timer can hold (days) is slept, and ends when the token is due, not before', async () => {
    // One token per 10^7 s: the next is due in 10^10 ms, beyond the 2^31−1 ms a Node timer can hold.
    // The bucket reads the faked clock, which moves with each timer as it fires.
    let reads = 0;
    const bucket = new TokenBucket(1e-7, 1, () => {
      reads++;
      return Date.now();
    });
    const never = new AbortController().signal;
    expect(bucket.take(never)).toBe(true);
    let granted = false;
    void Promise.resolve(bucket.take(never)).then((ok) => {
      granted = ok;
    });
    // A timer over the limit fires after 1 ms: retried every millisecond, the fake clock's loop limit is hit.
    // The wait is slept, not polled: a second of it costs no more than the first check.
    const before = reads;
    await vi.advanceTimersByTimeAsync(1000);
    expect(reads).toBe(before);
    // Within a second either side: the refill adds up in floating point.
    await vi.advanceTimersByTimeAsync(1e10 - 2000);
    expect(granted).toBe(false);
    await vi.advanceTimersByTimeAsync(2000);
    expect(granted).toBe(true);
  });

  it('a token given back goes to the first caller waiting, or is saved up to the capacity', async () => {
    const bucket = new TokenBucket(1, 1, clock);
    const never = new AbortController().signal;
    expect(bucket.take(never)).toBe(true);
    const first = bucket.take(never);
    const second = bucket.take(never);
    bucket.giveBack();
    expect(await first).toBe(true);
    let secondGranted = false;
    void Promise.resolve(second).then(() => {
      secondGranted = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(secondGranted).toBe(false);
    await advance(1000);
    expect(await second).toBe(true);
    // Nobody waits: saved, but never beyond the capacity.
    await advance(1000);
    bucket.giveBack();
    bucket.giveBack();
    expect(bucket.take(never)).toBe(true);
    expect(bucket.take(never)).not.toBe(true);
  });

  it('saves up one second of tokens by default, at least one', () => {
    const never = new AbortController().signal;
    const fast = new TokenBucket(2.5, undefined, clock);
    expect([fast.take(never), fast.take(never), fast.take(never)]).toEqual([true, true, true]);
    expect(fast.take(never)).not.toBe(true);
    const slow = new TokenBucket(0.5, undefined, clock);
    expect(slow.take(never)).toBe(true);
    expect(slow.take(never)).not.toBe(true);
  });

  it('a caller whose deadline has passed gets false when no token is there, a token when one is', async () => {
    const bucket = new TokenBucket(1, 1, clock);
    const passed = AbortSignal.abort();
    expect(bucket.take(passed)).toBe(true);
    expect(await bucket.take(passed)).toBe(false);
  });

  it('the only waiter leaving before its token comes leaves the token for the next caller', async () => {
    const bucket = new TokenBucket(1, 1, clock);
    const never = new AbortController().signal;
    const deadline = new AbortController();
    expect(bucket.take(never)).toBe(true);
    const cut = bucket.take(deadline.signal);
    deadline.abort();
    expect(await cut).toBe(false);
    // The wake-up set for it finds nobody waiting.
    await advance(1000);
    expect(bucket.take(never)).toBe(true);
    expect(bucket.take(never)).not.toBe(true);
  });

  it('a waiting caller whose deadline fires gets false and gives its turn to the next', async () => {
    const bucket = new TokenBucket(1, 1, clock);
    const deadline = new AbortController();
    const never = new AbortController().signal;
    expect(bucket.take(never)).toBe(true);
    const cut = bucket.take(deadline.signal);
    const next = bucket.take(never);
    deadline.abort();
    expect(await cut).toBe(false);
    await advance(1000);
    expect(await next).toBe(true);
  });

  it('a newcomer does not overtake callers already waiting', async () => {
    const bucket = new TokenBucket(1, 1, clock);
    const never = new AbortController().signal;
    expect(bucket.take(never)).toBe(true);
    const first = bucket.take(never);
    now += 1000;
    // A token is due, but `first` waits for it.
    const newcomer = bucket.take(never);
    expect(newcomer).not.toBe(true);
    let newcomerGranted = false;
    void Promise.resolve(newcomer).then(() => {
      newcomerGranted = true;
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(await first).toBe(true);
    expect(newcomerGranted).toBe(false);
    await advance(1000);
    expect(await newcomer).toBe(true);
  });
});

describe('the rate limit of an endpoint: every request that goes out takes a token, none other', () => {
  // Four tokens a second, four saved up: c1..c3 and a take them; b waits 250 ms; anything after b waits behind it.
  const lane = { rateLimitPerSecond: 4, maxConnections: 8, maxAttempts: 2, baseMs: 1, maxMs: 1 };
  const context = () => ({ signal: never, deadlineAt: Date.now() + 60_000 });
  const never = new AbortController().signal;
  const ids = (sink: TestEndpoint) =>
    sink.received.map((request) => request.eventId).filter((id) => id === 'a' || id === 'b');

  it('a retry waits for a token behind the requests already waiting', async () => {
    const sink = await testEndpoint((request, attempt) => ({
      status: request.eventId === 'a' && attempt === 1 ? 503 : 200,
    }));
    const sub = subscriberFor(sink.url, {}, 'sink', lane);
    const results = await Promise.all(['c1', 'c2', 'c3', 'a', 'b'].map((id) => sub.deliver(validEvent(id), context())));
    expect(results.map((result) => result.ok)).toEqual([true, true, true, true, true]);
    expect(ids(sink)).toEqual(['a', 'b', 'a']);
  });

  it('the request sent again after a 401 with the secret read again waits for a token too', async () => {
    const sink = await testEndpoint((request) => ({
      status: request.headers.authorization === 'Bearer old' ? 401 : 200,
    }));
    const sub = subscriberFor(sink.url, { auth: { kind: 'bearer', token: { ssm: '/t' } } }, 'sink', lane);
    const secrets = new Map([['ssm:/t', 'new']]);
    const refused = new Map([['ssm:/t', 'old']]);
    const refreshSecrets = async () => {
      refused.set('ssm:/t', 'new');
      return true;
    };
    const first = sub.deliver(validEvent('c1'), { ...context(), secrets, refreshSecrets });
    const sent = ['c2', 'c3'].map((id) => sub.deliver(validEvent(id), { ...context(), secrets, refreshSecrets }));
    // Only a's request carries the refused value.
    const a = sub.deliver(validEvent('a'), { ...context(), secrets: refused, refreshSecrets });
    const b = sub.deliver(validEvent('b'), { ...context(), secrets, refreshSecrets });
    for (const result of await Promise.all([first, ...sent, b])) expect(result).toMatchObject({ ok: true });
    expect(await a).toMatchObject({ ok: true, attempts: 2 });
    expect(ids(sink)).toEqual(['a', 'b', 'a']);
  });

  it('a request the open breaker refuses takes no token and does not wait for one', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    // One token per 1,000 s: only x can have one.
    const sub = subscriberFor(sink.url, {}, 'sink', {
      rateLimitPerSecond: 0.001,
      breakerThreshold: 1,
      breakerHalfOpenMs: 600_000,
    });
    expect(await sub.deliver(validEvent('x'), context())).toMatchObject({ ok: false, kind: 'transient' });
    const deadline = new AbortController();
    // Due before the breaker half-opens: refused at once rather than held until then.
    const refused = sub.deliver(validEvent('y'), { signal: deadline.signal, deadlineAt: Date.now() + 1000 });
    deadline.abort();
    expect(await refused).toMatchObject({ ok: false, kind: 'circuit-open', error: 'CIRCUIT_OPEN' });
  });

  it('a token taken by a request the breaker refused after its wait goes at once to the next one waiting', async () => {
    const sink = await testEndpoint(() => ({ status: 503 }));
    // One token a second, one saved up: a takes it and opens the breaker; b gets the next one, c would wait another.
    const sub = subscriberFor(sink.url, {}, 'sink', {
      rateLimitPerSecond: 1,
      maxConnections: 4,
      breakerThreshold: 1,
      breakerHalfOpenMs: 600_000,
    });
    const c = new AbortController();
    const deadlineAt = Date.now() + 60_000;
    const results = [
      sub.deliver(validEvent('a'), { signal: never, deadlineAt }),
      sub.deliver(validEvent('b'), { signal: never, deadlineAt }).then((result) => {
        // Once b is refused, c has its token already or waits a second more: cut it off here.
        c.abort();
        return result;
      }),
      sub.deliver(validEvent('c'), { signal: c.signal, deadlineAt }),
    ];
    expect((await Promise.all(results)).map((result) => !result.ok && result.kind)).toEqual([
      'transient',
      'circuit-open',
      'circuit-open',
    ]);
    expect(sink.received.map((request) => request.eventId)).toEqual(['a']);
  });
});
