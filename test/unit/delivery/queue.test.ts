import http from 'node:http';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { JobQueue, wakeWhenHeld } from '../../../lib/delivery/queue';
import { deliver, deliveryFor, never } from '../../support/delivery';
import { listenForTest, testEndpoint } from '../../support/endpoints';

describe('JobQueue', () => {
  it('gives items back first in, first out; peek leaves the next one in', () => {
    const queue = new JobQueue<number>();
    expect([queue.peek(), queue.shift(), queue.size]).toEqual([undefined, undefined, 0]);
    for (const n of [1, 2, 3]) queue.push(n);
    expect([queue.peek(), queue.peek(), queue.size]).toEqual([1, 1, 3]);
    expect([queue.shift(), queue.shift()]).toEqual([1, 2]);
    queue.push(4);
    expect([queue.shift(), queue.shift(), queue.shift(), queue.size]).toEqual([3, 4, undefined, 0]);
  });

  it('keeps the order, none lost or twice, across the drops of its taken part (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 8 }), (takes) => {
        const queue = new JobQueue<number>();
        const out: number[] = [];
        let pushed = 0;
        // Pushes run ahead of the takes, so the taken part passes 1024 with items still queued behind it.
        for (const count of takes) {
          for (let i = 0; i < count + 10; i++) queue.push(pushed++);
          for (let i = 0; i < count; i++) out.push(queue.shift()!);
          expect(queue.size).toBe(pushed - out.length);
        }
        while (queue.size > 0) out.push(queue.shift()!);
        expect(out).toEqual(Array.from({ length: pushed }, (_, i) => i));
      }),
      { numRuns: 30 },
    );
  });
});

describe('wakeWhenHeld', () => {
  it('wakes at the half-open time, or at once when the signal aborts, and not after being cancelled', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const wake = vi.fn();
    wakeWhenHeld(never, Date.now() + 100, wake);
    vi.advanceTimersByTime(99);
    expect(wake).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(wake).toHaveBeenCalledTimes(1);
    const controller = new AbortController();
    const woken = vi.fn();
    wakeWhenHeld(controller.signal, 'trial', woken);
    controller.abort();
    expect(woken).toHaveBeenCalledTimes(1);
    const cancelled = vi.fn();
    const other = new AbortController();
    wakeWhenHeld(other.signal, Date.now() + 100, cancelled)();
    other.abort();
    vi.advanceTimersByTime(1000);
    expect(cancelled).not.toHaveBeenCalled();
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

describe('EndpointDelivery queue order', () => {
  it('a long queue on one connection sends every event exactly once', { timeout: 30_000 }, async () => {
    const sink = await testEndpoint();
    const delivery = deliveryFor(sink.url, { maxConnections: 1 }, () => 0, 30_000);
    // Past 1024 delivered the queue drops the delivered part of its array: the rest must stay in order, none twice.
    const ids = Array.from({ length: 1500 }, (_, i) => `e${i}`);
    const results = await Promise.all(ids.map((id) => deliver(delivery, id)));
    expect(results.every((result) => result.ok)).toBe(true);
    expect(sink.received.map((request) => request.eventId)).toEqual(ids);
  });
});
