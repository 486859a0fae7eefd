import http from 'node:http';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { wakeWhenHeld } from '../../../lib/delivery/queue';
import { deliver, deliveryFor, never } from '../../support/delivery';
import { listenForTest, testEndpoint } from '../../support/endpoints';

describe('wakeWhenHeld', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    return () => {
      vi.useRealTimers();
    };
  });

  it('wakes at the half-open time, or at once when the signal aborts, and not after being cancelled', () => {
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

  it('held for a trial, waits for the trial to end: no timer re-checks the queue meanwhile', () => {
    const woken = vi.fn();
    wakeWhenHeld(never, 'trial', woken);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(woken).not.toHaveBeenCalled();
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
    // Far more jobs than connections: the queue gives them out in order, none lost or twice.
    const ids = Array.from({ length: 1500 }, (_, i) => `e${i}`);
    const results = await Promise.all(ids.map((id) => deliver(delivery, id)));
    expect(results.every((result) => result.ok)).toBe(true);
    expect(sink.received.map((request) => request.eventId)).toEqual(ids);
  });
});
