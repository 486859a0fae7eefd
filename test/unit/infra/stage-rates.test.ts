import { describe, expect, it } from 'vitest';
import { checkRates } from '../../../infra/stage/index';

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

  it('counts a rate between two thousandths down: one a minute (1/60) sends 15 in 899 s, not the 16 of 0.017/s', () => {
    const oneAMinute = config({ rateLimitPerSecond: 1 / 60 });
    const fifteenMinutes = { ...limits, timeoutS: 900 };
    expect(() => checkRates('prod', oneAMinute, { ...fifteenMinutes, batchSize: 16 })).toThrow(/at most 15 requests/);
    expect(() => checkRates('prod', oneAMinute, { ...fifteenMinutes, batchSize: 15 })).not.toThrow();
    // The burst is the bucket's own: 1.0004/s saves up 2, and sends 2 + 59 in 59 s.
    expect(() =>
      checkRates('prod', config({ rateLimitPerSecond: 1.0004 }), { ...limits, batchSize: 61 }),
    ).not.toThrow();
  });

  it('lets an endpoint without a rate limit take any batch', () => {
    expect(checkRates('prod', config({}), { ...limits, batchSize: 10_000 })).toContain(
      '  crm: no rate limit, 1000 concurrent requests (10 × 100)',
    );
  });
});

describe('checkRates: the global budget, over any one second, in whole milli-requests', () => {
  const budget = (endpoint: { rateLimitPerSecond: number; maxRatePerSecond: number }, maximumConcurrency: number) =>
    checkRates('prod', config(endpoint), { maximumConcurrency, batchSize: 1, timeoutS: 60 });

  it('counts the burst a full bucket sends after a pause, on top of a second of refill', () => {
    expect(budget({ rateLimitPerSecond: 20, maxRatePerSecond: 400 }, 10)).toContain(
      '  crm: 200 requests/s, at most 400 in one second (budget 400/s), 1000 concurrent requests (10 × 100)',
    );
    expect(refusal(() => budget({ rateLimitPerSecond: 20, maxRatePerSecond: 399 }, 10))).toBe(
      "Stage 'prod': endpoint 'crm': maxRatePerSecond is 399, but 10 instances (maximumConcurrency) × (a burst of 20 " +
        '+ rateLimitPerSecond 20) = 400 requests in one second: lower rateLimitPerSecond to 19.9 or lower ' +
        'maximumConcurrency',
    );
    expect(() => budget({ rateLimitPerSecond: 19.9, maxRatePerSecond: 399 }, 10)).not.toThrow();
  });

  it('accepts a worst case exactly at the budget, however binary floating point rounds it', () => {
    expect(budget({ rateLimitPerSecond: 1.1, maxRatePerSecond: 9.3 }, 3)).toContain(
      '  crm: 3.3 requests/s, at most 9.3 in one second (budget 9.3/s), 300 concurrent requests (3 × 100)',
    );
  });

  it("counts the burst the bucket really holds (ceil of the rate), not the rate's rounding to thousandths", () => {
    // 1.0004/s: the bucket saves up 2, so 10 instances send 2 + 1.0004 each in one second, not 1 + 1.
    expect(refusal(() => budget({ rateLimitPerSecond: 1.0004, maxRatePerSecond: 20 }, 10))).toBe(
      "Stage 'prod': endpoint 'crm': maxRatePerSecond is 20, but 10 instances (maximumConcurrency) × (a burst of 2 " +
        '+ rateLimitPerSecond 1.0004) = 30.01 requests in one second: lower rateLimitPerSecond to 1 or lower ' +
        'maximumConcurrency',
    );
    expect(() => budget({ rateLimitPerSecond: 1, maxRatePerSecond: 20 }, 10)).not.toThrow();
    // A budget is never rounded up past what it says.
    expect(() => budget({ rateLimitPerSecond: 1, maxRatePerSecond: 19.9996 }, 10)).toThrow(/maxRatePerSecond/);
  });

  it('suggests fewer instances when no rate of at least 0.001/s fits', () => {
    expect(refusal(() => budget({ rateLimitPerSecond: 0.001, maxRatePerSecond: 3.003 }, 1000))).toContain(
      'lower maximumConcurrency to 3 (no rate of at least 0.001/s fits 1000 instances)',
    );
    expect(refusal(() => budget({ rateLimitPerSecond: 0.5, maxRatePerSecond: 0.001 }, 2))).toContain(
      'raise maxRatePerSecond',
    );
  });
});
