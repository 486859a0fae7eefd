import { describe, expect, it } from 'vitest';
import { checkRates } from '../../../infra/stage.js';

const config = (endpoint: { rateLimitPerSecond?: number; maxRatePerSecond?: number }, deadlineMarginMs = 1000) => ({
  endpointMaxConnections: 100,
  deadlineMarginMs,
  endpoints: [{ name: 'crm', ...endpoint }],
});
const limits = { maximumConcurrency: 10, batchSize: 100, timeoutS: 60 };

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('accepted');
}

describe('checkRates: a rate-limited endpoint must take a whole batch within one invocation', () => {
  it('refuses a batch that the rate limit cannot send before the deadline, with the numbers and the fixes', () => {
    expect(refusal(() => checkRates('prod', config({ rateLimitPerSecond: 0.1 }), limits))).toBe(
      "Stage 'prod': endpoint 'crm': rateLimitPerSecond 0.1 lets an instance send at most 6 requests in one " +
        'invocation (1 at once + 0.1/s × 59 s: timeoutS 60 less DEADLINE_MARGIN_MS 1000), but batchSize is 100: the ' +
        'records left waiting would be received again and again until they reach the dead-letter queue. Lower ' +
        'batchSize to at most 6, raise rateLimitPerSecond to at least 1.662, or raise timeoutS',
    );
  });

  it('accepts the limits it suggests', () => {
    expect(() => checkRates('prod', config({ rateLimitPerSecond: 0.1 }), { ...limits, batchSize: 6 })).not.toThrow();
    expect(() => checkRates('prod', config({ rateLimitPerSecond: 1.662 }), limits)).not.toThrow();
    expect(() => checkRates('prod', config({ rateLimitPerSecond: 1.661 }), limits)).toThrow(/at most 99 requests/);
  });

  it('lets an endpoint without a rate limit take any batch', () => {
    expect(checkRates('prod', config({}), { ...limits, batchSize: 10_000 })).toContain(
      '  crm: no rate limit, 1000 concurrent requests (10 × 100)',
    );
  });
});
