import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenBucket } from '../../../lib/subscription/rate-limit';

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

  it('a wait longer than a timer can hold is slept in steps, not retried every millisecond', async () => {
    const bucket = new TokenBucket(1e-7, 1, clock);
    const never = new AbortController().signal;
    expect(bucket.take(never)).toBe(true);
    const timers = vi.spyOn(globalThis, 'setTimeout');
    let granted = false;
    void Promise.resolve(bucket.take(never)).then((ok) => {
      granted = ok;
    });
    await advance(1000);
    expect(timers.mock.calls.length).toBe(1);
    expect(timers.mock.calls[0]?.[1]).toBe(2 ** 31 - 1);
    expect(granted).toBe(false);
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
