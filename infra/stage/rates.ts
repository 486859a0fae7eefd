// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// The endpoints' rate limits and budgets across the fleet of instances (maximumConcurrency).

import { fail } from './errors';

/** An endpoint's limits as the endpoints file or ENDPOINTS set them. */
export interface RateEndpoint {
  name: string;
  maxConnections?: number;
  rateLimitPerSecond?: number;
  maxRatePerSecond?: number;
}

/** An endpoint with both a per-instance rate limit and a global budget. */
type Budgeted = RateEndpoint & { rateLimitPerSecond: number; maxRatePerSecond: number };

/** What checkRates reads of the function's configuration. */
export interface RateConfig {
  endpointMaxConnections: number;
  deadlineMarginMs: number;
  endpoints: readonly RateEndpoint[];
}

/** The stage params the fleet's worst case depends on. */
export interface FleetLimits {
  maximumConcurrency: number;
  batchSize: number;
  timeoutS: number;
}

/** A token bucket's burst: what lib/subscription/rate-limit.ts saves up (one second of requests, at least one). */
function burstOf(ratePerSecond: number): number {
  return Math.max(1, Math.ceil(ratePerSecond));
}

/** Requests an instance can send in `availableMs` at `rateMilli` thousandths of a request per second. */
function deliverableIn(rateMilli: number, availableMs: number, burst = burstOf(rateMilli / 1000)): number {
  return burst + Math.floor((rateMilli * availableMs) / 1_000_000);
}

/** The smallest whole number of milli-requests per second for which `enough` holds (it must be monotone). */
function smallestMilli(enough: (milli: number) => boolean, highest = 100_000_000): number {
  let low = 1;
  let high = highest;
  while (low < high) {
    const middle = Math.floor((low + high) / 2);
    if (enough(middle)) high = middle;
    else low = middle + 1;
  }
  return low;
}

/**
 * Refuses a rate-limited endpoint that cannot take a whole batch within one invocation: records still waiting for a
 * token at the deadline go back to the queue, and the same ones would wait again on every receive.
 */
function checkBatchFitsRate(
  stage: string,
  endpoint: RateEndpoint,
  { batchSize, timeoutS, deadlineMarginMs }: Omit<FleetLimits, 'maximumConcurrency'> & { deadlineMarginMs: number },
): void {
  const rate = endpoint.rateLimitPerSecond;
  if (rate === undefined) return;
  const availableMs = timeoutS * 1000 - deadlineMarginMs;
  const burst = burstOf(rate);
  // What it surely sends: the rate rounded down (1/60 is not 0.017), the burst of the configured rate itself.
  const deliverable = deliverableIn(milliDown(rate), availableMs, burst);
  if (batchSize <= deliverable) return;
  const neededRate = smallestMilli((milli) => deliverableIn(milli, availableMs) >= batchSize) / 1000;
  fail(
    stage,
    `endpoint '${endpoint.name}': rateLimitPerSecond ${rate} lets an instance send at most ${deliverable} requests ` +
      `in one invocation (${burst} at once + ${rate}/s × ${availableMs / 1000} s: timeoutS ${timeoutS} less ` +
      `DEADLINE_MARGIN_MS ${deadlineMarginMs}), but batchSize is ${batchSize}: the records left waiting would be ` +
      `received again and again until they reach the dead-letter queue. Lower batchSize to at most ${deliverable}, ` +
      `raise rateLimitPerSecond to at least ${neededRate}, or raise timeoutS`,
  );
}

// In whole milli-requests, so that 3 × 3.1 equals 9.3 rather than exceeding it: rounded to micro-requests first (which
// absorbs binary floating point), then a rate up and a budget down, so that neither is ever taken for more than it says.
const milliUp = (perSecond: number) => Math.ceil(Math.round(perSecond * 1_000_000) / 1000);

const milliDown = (perSecond: number) => Math.floor(Math.round(perSecond * 1_000_000) / 1000);

/**
 * The most requests an instance sends in any one second, in milli-requests: its full bucket (saved up during a pause)
 * at once, plus a second of refill. `ratePerSecond` is the configured value itself: the bucket holds ceil of it
 * (1.0004/s saves up 2), which rounding it first to thousandths would miss.
 */
function oneSecondMilli(ratePerSecond: number): number {
  return burstOf(ratePerSecond) * 1000 + milliUp(ratePerSecond);
}

/** How many instances fit in an endpoint's global budget at their worst second (undefined: it declares none). */
export function budgetInstances(endpoint: RateEndpoint): number | undefined {
  if (endpoint.maxRatePerSecond === undefined || endpoint.rateLimitPerSecond === undefined) return undefined;
  return Math.floor(milliDown(endpoint.maxRatePerSecond) / oneSecondMilli(endpoint.rateLimitPerSecond));
}

/** Why an endpoint's worst second exceeds its budget, and the per-instance rate (or concurrency) that would fit. */
function overBudget(endpoint: Budgeted, maximumConcurrency: number, worstMilli: number): string {
  const budgetMilli = milliDown(endpoint.maxRatePerSecond);
  const fittingMilli = smallestMilli((rate) => maximumConcurrency * oneSecondMilli(rate / 1000) > budgetMilli) - 1;
  const burst = burstOf(endpoint.rateLimitPerSecond);
  const fittingConcurrency = Math.floor(budgetMilli / oneSecondMilli(endpoint.rateLimitPerSecond));
  const fix =
    fittingMilli >= 1
      ? `lower rateLimitPerSecond to ${fittingMilli / 1000} or lower maximumConcurrency`
      : fittingConcurrency >= 2
        ? `lower maximumConcurrency to ${fittingConcurrency} (no rate of at least 0.001/s fits ${maximumConcurrency} instances)`
        : 'raise maxRatePerSecond: no rate of at least 0.001/s fits 2 instances (the fewest maximumConcurrency allows)';
  return (
    `endpoint '${endpoint.name}': maxRatePerSecond is ${endpoint.maxRatePerSecond}, but ${maximumConcurrency} ` +
    `instances (maximumConcurrency) × (a burst of ${burst} + rateLimitPerSecond ${endpoint.rateLimitPerSecond}) = ` +
    `${worstMilli / 1000} requests in one second: ${fix}`
  );
}

/**
 * Returns each endpoint's worst case across the fleet (maximumConcurrency instances, each at its own limits) and
 * refuses an endpoint whose declared global budget (maxRatePerSecond) that worst case could exceed, or whose rate
 * limit cannot take a batch within an invocation.
 */
export function checkRates(
  stage: string,
  config: RateConfig,
  { maximumConcurrency, batchSize, timeoutS }: FleetLimits,
): string[] {
  const lines = [`Stage '${stage}': worst case per endpoint with maximumConcurrency ${maximumConcurrency}:`];
  for (const endpoint of config.endpoints) {
    const connections = endpoint.maxConnections ?? config.endpointMaxConnections;
    const concurrency = maximumConcurrency * connections;
    const limit = endpoint.rateLimitPerSecond;
    const rateMilli = limit === undefined ? undefined : milliUp(limit);
    const worstMilli = limit === undefined ? undefined : maximumConcurrency * oneSecondMilli(limit);
    const budget = endpoint.maxRatePerSecond === undefined ? '' : ` (budget ${endpoint.maxRatePerSecond}/s)`;
    const rate =
      rateMilli === undefined || worstMilli === undefined
        ? 'no rate limit'
        : `${(maximumConcurrency * rateMilli) / 1000} requests/s, at most ${worstMilli / 1000} in one second`;
    lines.push(
      `  ${endpoint.name}: ${rate}${budget}, ${concurrency} concurrent requests (${maximumConcurrency} × ${connections})`,
    );
    const { maxRatePerSecond } = endpoint;
    if (limit !== undefined && worstMilli !== undefined && maxRatePerSecond !== undefined) {
      if (worstMilli > milliDown(maxRatePerSecond)) {
        fail(
          stage,
          overBudget({ ...endpoint, rateLimitPerSecond: limit, maxRatePerSecond }, maximumConcurrency, worstMilli),
        );
      }
    }
    checkBatchFitsRate(stage, endpoint, { batchSize, timeoutS, deadlineMarginMs: config.deadlineMarginMs });
  }
  return lines;
}
