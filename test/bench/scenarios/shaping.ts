import { parseEvent, type ValidEvent } from '../../../lib/event/event';
import { TokenBucket } from '../../../lib/subscription/rate-limit';
import { RequestShaper } from '../../../lib/subscription/request';
import type { EndpointConfig } from '../../../lib/subscription/schema';
import { cloudEventBody } from '../events';
import type { BenchOptions } from '../measure';
import { type Summary, summarize } from '../stats';

/** Events shaped per run: enough for a stable per-delivery figure, small enough to stay in the nursery. */
export const SHAPING_EVENTS = 20_000;

export interface ShapingRow {
  variant: string;
  usPerDelivery: Summary;
}

const SECRETS = new Map([
  ['ssm:/new', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
  ['ssm:/old', 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD'],
  ['ssm:/token', 'tok-123'],
]);
const url = new URL('https://sink.example.com/in');
const VARIANTS: [string, EndpointConfig][] = [
  ['structured, no auth (the floor)', { name: 'a', url }],
  ['structured, bearer token', { name: 'a', url, auth: { kind: 'bearer', token: { ssm: '/token' } } }],
  ['binary content mode', { name: 'a', url, contentMode: 'binary' }],
  [
    'Standard Webhooks, 1 secret',
    { name: 'a', url, signing: { scheme: 'standard-webhooks', secrets: [{ ssm: '/new' }] } },
  ],
  [
    'Standard Webhooks, 2 secrets (rotation)',
    { name: 'a', url, signing: { scheme: 'standard-webhooks', secrets: [{ ssm: '/new' }, { ssm: '/old' }] } },
  ],
  [
    'binary + Standard Webhooks, 2 secrets',
    {
      name: 'a',
      url,
      contentMode: 'binary',
      signing: { scheme: 'standard-webhooks', secrets: [{ ssm: '/new' }, { ssm: '/old' }] },
    },
  ],
];

function events(): ValidEvent[] {
  return Array.from({ length: SHAPING_EVENTS }, (_, i) => {
    const parsed = parseEvent(cloudEventBody(i), 1_048_576);
    if (!parsed.ok) throw new Error(parsed.detail);
    return parsed;
  });
}

function timeUs(run: () => void): number {
  const started = process.hrtime.bigint();
  run();
  return Number(process.hrtime.bigint() - started) / 1000 / SHAPING_EVENTS;
}

/**
 * What shaping one request costs on top of sending it: headers and body per (event, endpoint) for each content mode
 * and signature, and a rate limit's token bucket that never has to wait. In the bench process itself, one warm-up.
 */
export function shaping(options: BenchOptions): ShapingRow[] {
  const batch = events();
  const context = { signal: new AbortController().signal, secrets: SECRETS };
  const rows: ShapingRow[] = VARIANTS.map(([variant, endpoint]) => {
    const shaper = new RequestShaper(endpoint, { timeoutMs: 5000 });
    const run = () => {
      for (const event of batch) shaper.source(event, context).prepare();
    };
    run();
    return { variant, usPerDelivery: summarize(Array.from({ length: options.runs }, () => timeUs(run))) };
  });
  const bucket = new TokenBucket(1e9);
  const take = () => {
    for (let i = 0; i < SHAPING_EVENTS; i++) bucket.take(context.signal);
  };
  take();
  rows.push({
    variant: 'rate limit: one token taken (no wait)',
    usPerDelivery: summarize(Array.from({ length: options.runs }, () => timeUs(take))),
  });
  return rows;
}
