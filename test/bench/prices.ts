import { MAX_DELAY_S } from '../../lib/lanes/envelope';
import { type BackoffPolicy, backoffDelayS } from '../../lib/settle/backoff';

/**
 * Published on-demand prices (us-east-1, USD, after the free tiers) used by the cost table, with where they come from.
 * Check the pages before relying on a figure: AWS changes prices, and other regions differ.
 */
export const PRICES = {
  lambdaArmGbSecond: 0.0000133334,
  lambdaRequest: 0.2 / 1e6,
  sqsRequest: 0.4 / 1e6,
  dynamoWriteUnit: 0.625 / 1e6,
  dynamoReadUnit: 0.125 / 1e6,
  logsIngestedGb: 0.5,
  eventBridgeCustomEvent: 1.0 / 1e6,
  eventBridgeApiDestination: 0.2 / 1e6,
  pipesRequest: 0.4 / 1e6,
  snsPublish: 0.5 / 1e6,
  snsHttpDelivery: 0.6 / 1e6,
  // Svix beyond a plan's included messages (RETRY_PRICE_SOURCES).
  svixMessage: 0.0001,
} as const;

export const PRICE_SOURCES = [
  'Lambda (arm64 $0.0000133334 per GB-second, $0.20 per million requests): https://aws.amazon.com/lambda/pricing/',
  'SQS (standard queue, $0.40 per million requests of up to 64 KB): https://aws.amazon.com/sqs/pricing/',
  'DynamoDB on-demand ($0.625 per million write request units, $0.125 per million read request units): https://aws.amazon.com/dynamodb/pricing/on-demand/',
  'CloudWatch Logs (standard class, $0.50 per GB ingested): https://aws.amazon.com/cloudwatch/pricing/',
  'EventBridge (custom events $1.00 per million, API destinations $0.20 per million invocations, Pipes $0.40 per million requests): https://aws.amazon.com/eventbridge/pricing/',
  'SNS (standard topic: $0.50 per million publishes, $0.60 per million HTTP/S deliveries): https://aws.amazon.com/sns/pricing/',
  'Secondary summaries of the same figures: https://www.factualminds.com/blog/amazon-eventbridge-pricing-events-pipes-schema-archive/, https://www.factualminds.com/blog/amazon-sns-pricing-publishes-fanout-protocols/, https://airbyte.com/data-engineering-resources/dynamodb-pricing',
];

/** What the peers charge for retrying a delivery, from their pages (checked 2026-12). */
export const RETRY_PRICE_SOURCES = [
  'EventBridge API destinations: $0.20 per million invocations (https://aws.amazon.com/eventbridge/pricing/; "charges are based on the number of target invocations": https://aws.amazon.com/premiumsupport/knowledge-center/eventbridge-reduce-charges/); retries by default for 24 h and up to 185 times, exponential back-off with jitter (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-retry-policy.html). Neither page says whether a retry is billed as another invocation, and the retry times are not published, so its retry cost is not computed here.',
  'Svix: priced per message (Free: 50k messages a month; Professional from $490 a month; $0.0001 per message beyond the plan: https://www.svix.com/pricing/ as transcribed in https://raw.githubusercontent.com/api-evangelist/svix/refs/heads/main/plans/svix-plans-pricing.yml); attempts on its schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: https://docs.svix.com/retries/) carry no price of their own there.',
];

/** Lambda's own START, END and REPORT lines per invocation, bytes (about; they vary with ids and figures). */
export const PLATFORM_LOG_BYTES = 350;
/** Receives and deletes per message: the event source mapping receives and deletes 10 messages per request. */
export const SQS_REQUESTS_PER_EVENT = 0.2;

/** Messages per SQS request on a lane: its mapping receives and deletes up to 10, the function sends 10 per batch. */
export const LANE_BATCH = 10;
/** A lane invocation's duration for a batch of 10 (re-sends or one delivery each) at 512 MB: assumed, not measured. */
export const LANE_BATCH_MS = 100;
export const LANE_MEMORY_GB = 0.5;

/** SQS messages handled for one parked event: each send, receive and delete is one message operation. */
export interface LaneOps {
  sends: number;
  receives: number;
  deletes: number;
}

/** Receives of a lane message over one wait: a hop every MAX_DELAY_S, the last one being the delivery attempt. */
export const receivesPerWait = (waitS: number): number => Math.max(1, Math.ceil(waitS / MAX_DELAY_S));

/**
 * SQS message operations for one event parked in its lane and delivered at lane attempt `attempt` (1 = after the
 * schedule's first wait); an `attempt` past the schedule's length is an event that exhausted it (sent to the DLQ).
 * Park: one send. Each receive before the last attempt is receive + send (the next hop or wait) + delete; the
 * delivering receive is receive + delete; an exhausted event's last receive sends to the DLQ instead.
 */
export function parkedEventOps(schedule: readonly number[], attempt: number): LaneOps {
  const waits = schedule.slice(0, Math.min(attempt, schedule.length));
  const receives = waits.reduce((sum, wait) => sum + receivesPerWait(wait), 0);
  const exhausted = attempt > schedule.length;
  return { sends: 1 + receives - (exhausted ? 0 : 1), receives, deletes: receives };
}

export interface OutageCost {
  parked: number;
  /** Lane receives (hops and attempts) while the endpoint was down, and until every parked event is delivered. */
  receivesDuring: number;
  ops: LaneOps;
  requests: number;
  /** SQS requests if none were batched (one message per request): the upper bound at low volume. */
  requestsUnbatched: number;
  exhausted: number;
  /** Seconds from the recovery until the last parked event's delivering attempt. */
  drainS: number;
  invocations: number;
  gbSeconds: number;
  usd: { sqs: number; sqsUnbatched: number; lambda: number };
}

/** Receive times, from the park, of a wait starting at `start`: every MAX_DELAY_S, then the attempt at its end. */
function receiveTimes(start: number, waitS: number): number[] {
  const hops = receivesPerWait(waitS);
  return Array.from({ length: hops }, (_, i) => (i === hops - 1 ? start + waitS : start + (i + 1) * MAX_DELAY_S));
}

/**
 * One endpoint down for `outageS` at `ratePerS` events a second, every event parked at its first failure (the
 * breaker is open for an endpoint that is down) and delivered at its first lane attempt after the recovery.
 */
export function outageCost(schedule: readonly number[], ratePerS: number, outageS: number): OutageCost {
  const total: LaneOps = { sends: 0, receives: 0, deletes: 0 };
  let receivesDuring = 0;
  let exhausted = 0;
  let drainS = 0;
  for (let t = 0; t < outageS; t++) {
    let at = t;
    let attempt = 0;
    while (attempt < schedule.length) {
      const wait = schedule[attempt]!;
      receivesDuring += receiveTimes(at, wait).filter((time) => time < outageS).length * ratePerS;
      at += wait;
      attempt++;
      if (at >= outageS) break;
    }
    if (at < outageS) {
      exhausted += ratePerS;
      attempt++;
    } else drainS = Math.max(drainS, at - outageS);
    const ops = parkedEventOps(schedule, attempt);
    total.sends += ops.sends * ratePerS;
    total.receives += ops.receives * ratePerS;
    total.deletes += ops.deletes * ratePerS;
  }
  const messages = total.sends + total.receives + total.deletes;
  const invocations = total.receives / LANE_BATCH;
  const gbSeconds = invocations * (LANE_BATCH_MS / 1000) * LANE_MEMORY_GB;
  return {
    parked: ratePerS * outageS,
    receivesDuring,
    ops: total,
    requests: messages / LANE_BATCH,
    requestsUnbatched: messages,
    exhausted,
    drainS,
    invocations,
    gbSeconds,
    usd: {
      sqs: (messages / LANE_BATCH) * PRICES.sqsRequest,
      sqsUnbatched: messages * PRICES.sqsRequest,
      lambda: invocations * PRICES.lambdaRequest + gbSeconds * PRICES.lambdaArmGbSecond,
    },
  };
}

/**
 * Redeliveries of a source record that keeps failing for an endpoint whose breaker stays closed, before it is old
 * enough (PARK_AFTER_S) to park: each is a receive plus the handler's ChangeMessageVisibility. `random` picks the
 * jitter: () => 0 gives the shortest backoffs (most redeliveries), () => 0.999 the longest.
 */
export function redeliveriesBeforePark(parkAfterS: number, policy: BackoffPolicy, random: () => number): number {
  let age = 0;
  let receives = 1;
  while (age < parkAfterS) {
    const delay = backoffDelayS(receives, policy, undefined, random);
    // No backoff (RETRY_BASE_DELAY_S=0): redelivered at once, as often as invocations allow; not countable here.
    if (delay <= 0) return Number.POSITIVE_INFINITY;
    age += delay;
    receives++;
  }
  return receives - 1;
}
