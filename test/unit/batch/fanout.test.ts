import { createHmac } from 'node:crypto';
import { describe, expect, it, onTestFinished } from 'vitest';
import { fanout } from '../../../lib/batch/fanout';
import { EndpointDelivery } from '../../../lib/delivery/delivery';
import { type Credential, Endpoint, type RequestObserver } from '../../../lib/delivery/endpoint';
import { parseEvent, type ValidEvent } from '../../../lib/event/event';
import type { EndpointConfig } from '../../../lib/subscription/schema';
import { Subscriber } from '../../../lib/subscription/subscriber';
import { closedPortUrl, testEndpoint } from '../../support/endpoints';
import { cloudEvent } from '../../support/events';

function delivery(
  name: string,
  url: string,
  observe?: RequestObserver,
  settings: Partial<EndpointConfig> = {},
): Subscriber {
  const endpoint = new Endpoint({ name, url: new URL(url), timeoutMs: 30_000, maxConnections: 4 }, observe);
  const lane = new EndpointDelivery(
    endpoint,
    { maxAttempts: 1, baseMs: 1, maxMs: 1, breakerThreshold: 0, breakerHalfOpenMs: 1000, maxConnections: 4 },
    () => 0,
  );
  const result = new Subscriber({ name, url: new URL(url), ...settings }, lane, { timeoutMs: 30_000 });
  onTestFinished(() => result.close());
  return result;
}

function event(id: string): ValidEvent {
  const parsed = parseEvent(JSON.stringify(cloudEvent(id)), 1_048_576);
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed;
}

const context = () => ({ signal: new AbortController().signal, deadlineAt: Date.now() + 60_000 });

describe('fanout', () => {
  it('sends the event to every endpoint and reports one result per endpoint, in endpoint order', async () => {
    const [a, b, c] = await Promise.all([
      testEndpoint(),
      testEndpoint(() => ({ status: 503 })),
      testEndpoint(() => ({ status: 404 })),
    ]);
    const ev = event('evt-1');
    const result = await fanout(
      ev,
      [delivery('a', a.url), delivery('b', b.url), delivery('c', c.url)],
      undefined,
      context(),
    );
    expect(result.skipped).toEqual([]);
    expect(result.results).toMatchObject([
      { ok: true, endpoint: 'a', status: 200 },
      { ok: false, endpoint: 'b', kind: 'transient', status: 503 },
      { ok: false, endpoint: 'c', kind: 'endpoint-error', status: 404 },
    ]);
    for (const sink of [a, b, c]) {
      expect(sink.received).toHaveLength(1);
      expect(sink.received[0]?.body.equals(ev.body)).toBe(true);
      expect(sink.received[0]?.headers['idempotency-key']).toBe(ev.key);
    }
  });

  it('asks all endpoints at once: one that never answers does not hold up the others', {
    timeout: 10_000,
  }, async () => {
    const [hanging, b, c] = await Promise.all([testEndpoint(() => ({ hang: true })), testEndpoint(), testEndpoint()]);
    const controller = new AbortController();
    // Tells when the client side of a request has its answer (the observer is called once per request).
    const answered = new Map<string, Promise<void>>();
    const observe: RequestObserver = (name) => {
      let done!: () => void;
      answered.set(name, new Promise<void>((resolve) => (done = resolve)));
      return () => done();
    };
    const pending = fanout(
      event('evt-1'),
      [delivery('slow', hanging.url, observe), delivery('b', b.url, observe), delivery('c', c.url, observe)],
      undefined,
      { signal: controller.signal, deadlineAt: Date.now() + 60_000 },
    );
    // The others are answered while the first endpoint is still holding its request.
    await Promise.all([hanging.waitForRequests(1), b.waitForRequests(1), c.waitForRequests(1)]);
    await Promise.all([answered.get('b'), answered.get('c')]);
    expect(b.accepted.get('evt-1')).toBe(1);
    expect(c.accepted.get('evt-1')).toBe(1);
    expect(hanging.received).toHaveLength(1);
    controller.abort();
    const result = await pending;
    expect(result.results.map((r) => [r.endpoint, r.ok ? 'ok' : r.kind])).toEqual([
      ['slow', 'aborted'],
      ['b', 'ok'],
      ['c', 'ok'],
    ]);
  });

  it('does not call endpoints that already have the event and lists them as skipped', async () => {
    const [a, b, c] = await Promise.all([testEndpoint(), testEndpoint(), testEndpoint()]);
    const result = await fanout(
      event('evt-1'),
      [delivery('a', a.url), delivery('b', b.url), delivery('c', c.url)],
      new Set(['b', 'c', 'unknown']),
      context(),
    );
    expect(result.skipped).toEqual(['b', 'c']);
    expect(result.results).toMatchObject([{ ok: true, endpoint: 'a' }]);
    expect(a.received).toHaveLength(1);
    expect(b.received).toHaveLength(0);
    expect(c.received).toHaveLength(0);
  });

  it('with every endpoint skipped, sends nothing', async () => {
    const a = await testEndpoint();
    const result = await fanout(event('evt-1'), [delivery('a', a.url)], new Set(['a']), context());
    expect(result).toEqual({ results: [], skipped: ['a'], routed: ['a'] });
    expect(a.received).toHaveLength(0);
  });

  it("applies each endpoint's own credential, and none where none is configured", async () => {
    const [a, b, c] = await Promise.all([testEndpoint(), testEndpoint(), testEndpoint()]);
    const ev = event('evt-1');
    const credentials = new Map<string, Credential>([
      ['a', { kind: 'bearer', token: 'token-for-a' }],
      ['b', { kind: 'hmac', secret: 'secret-for-b' }],
    ]);
    await fanout(ev, [delivery('a', a.url), delivery('b', b.url), delivery('c', c.url)], undefined, {
      ...context(),
      credentials,
    });
    expect(a.received[0]?.headers.authorization).toBe('Bearer token-for-a');
    expect(a.received[0]?.headers['x-signature-256']).toBeUndefined();
    const signature = createHmac('sha256', 'secret-for-b').update(ev.body).digest('hex');
    expect(b.received[0]?.headers['x-signature-256']).toBe(`sha256=${signature}`);
    expect(b.received[0]?.headers.authorization).toBeUndefined();
    expect(c.received[0]?.headers.authorization).toBeUndefined();
    expect(c.received[0]?.headers['x-signature-256']).toBeUndefined();
  });

  it('sends an event only to the endpoints whose filter it matches, and lists those as routed', async () => {
    const [orders, audit, search] = await Promise.all([testEndpoint(), testEndpoint(), testEndpoint()]);
    const subscribers = [
      delivery('orders', orders.url, undefined, { filter: { type: { prefix: 'com.example.order.' } } }),
      delivery('audit', audit.url),
      delivery('search', search.url, undefined, { filter: { source: 'urn:elsewhere' } }),
    ];
    const order = parseEvent(
      JSON.stringify(cloudEvent('o-1', { type: 'com.example.order.created' })),
      1_048_576,
    ) as ValidEvent;
    const routed = await fanout(order, subscribers, undefined, context());
    expect(routed.routed).toEqual(['orders', 'audit']);
    expect(routed.results.map((r) => r.endpoint)).toEqual(['orders', 'audit']);
    // Not routed, so not "skipped" either: the ledger never hears of it.
    const skippedByLedger = await fanout(order, subscribers, new Set(['orders', 'search']), context());
    expect(skippedByLedger).toMatchObject({ routed: ['orders', 'audit'], skipped: ['orders'] });
    expect(orders.received).toHaveLength(1);
    expect(audit.received).toHaveLength(2);
    expect(search.received).toHaveLength(0);
  });

  it('never throws: an unreachable endpoint is a result like any other', async () => {
    const a = await testEndpoint();
    const result = await fanout(
      event('evt-1'),
      [delivery('down', await closedPortUrl()), delivery('a', a.url)],
      undefined,
      context(),
    );
    expect(result.results).toMatchObject([
      { ok: false, endpoint: 'down', kind: 'transient', error: 'ECONNREFUSED' },
      { ok: true, endpoint: 'a' },
    ]);
  });
});
