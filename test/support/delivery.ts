import { expect, onTestFinished, vi } from 'vitest';
import { EndpointDelivery, type RetryOptions } from '../../lib/delivery/delivery';
import { CONTENT_TYPE, Endpoint } from '../../lib/delivery/endpoint';
import { idempotencyKey } from '../../lib/event/event';
import { cloudEvent } from './events';

/** Three attempts, 1–10 ms of backoff, no breaker, eight connections: what the delivery tests change from. */
export const defaults: RetryOptions = {
  maxAttempts: 3,
  baseMs: 1,
  maxMs: 10,
  breakerThreshold: 0,
  breakerHalfOpenMs: 5000,
  maxConnections: 8,
};

/** An EndpointDelivery named 'sink' to `url`, closed after the test. */
export function deliveryFor(
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

export function eventBody(id: string): { body: Buffer; key: string } {
  return { body: Buffer.from(JSON.stringify(cloudEvent(id))), key: idempotencyKey('urn:test:orders', id) };
}

/** A signal that never aborts. */
export const never = new AbortController().signal;
/** A deadline a minute away. */
export const later = () => Date.now() + 60_000;

/** Delivers the sample event `id` (its id is what the test endpoint records). */
export function deliver(delivery: EndpointDelivery, id = 'evt-1', signal = never, deadlineAt = later()) {
  const { body, key } = eventBody(id);
  const request = { headers: { 'content-type': CONTENT_TYPE, 'idempotency-key': key }, body };
  return delivery.deliver({ prepare: () => request }, signal, deadlineAt);
}

/** Waits (a condition, not a sleep) until the breaker's half-open time, read on Date.now(), has passed. */
export async function pastHalfOpen(openedAt: number, halfOpenMs: number) {
  await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(openedAt + halfOpenMs), { timeout: 5000, interval: 5 });
}
