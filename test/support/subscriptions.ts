import { onTestFinished } from 'vitest';
import { EndpointDelivery, type RetryOptions } from '../../lib/delivery/delivery';
import { Endpoint } from '../../lib/delivery/endpoint';
import { parseEvent, type ValidEvent } from '../../lib/event/event';
import type { EndpointConfig } from '../../lib/subscription/schema';
import { Subscriber } from '../../lib/subscription/subscriber';
import { cloudEvent } from './events';

/** A Subscriber for `url` with these settings: one attempt, no breaker (unless `lane` says); closed after the test. */
export function subscriberFor(
  url: string,
  settings: Partial<EndpointConfig> = {},
  name = 'sink',
  lane: Partial<RetryOptions> = {},
): Subscriber {
  const target = new URL(url);
  const delivery = new EndpointDelivery(new Endpoint({ name, url: target, timeoutMs: 10_000, maxConnections: 2 }), {
    maxAttempts: 1,
    baseMs: 1,
    maxMs: 1,
    breakerThreshold: 0,
    breakerHalfOpenMs: 1000,
    maxConnections: 2,
    ...lane,
  });
  const subscriber = new Subscriber({ name, url: target, ...settings }, delivery, { timeoutMs: 10_000 });
  onTestFinished(() => subscriber.close());
  return subscriber;
}

/** A parsed, valid event built from the suite's sample CloudEvent. */
export function validEvent(id = 'evt-1', extra: Record<string, unknown> = {}): ValidEvent {
  const parsed = parseEvent(JSON.stringify(cloudEvent(id, extra)), 1_048_576);
  if (!parsed.ok) throw new Error(parsed.detail);
  return parsed;
}
