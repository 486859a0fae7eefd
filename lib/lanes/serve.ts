import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { SQSRecord } from 'aws-lambda';
import { cameThroughRedrive } from '../batch/batch';
import { type FanoutContext, fanout } from '../batch/fanout';
import type { DeliveryResult } from '../delivery';
import { errorText } from '../errors';
import { eventIdOf, parseEvent, type ValidEvent } from '../event';
import { MetricName, MetricUnit } from '../observability/observability';
import { MAX_RETRY_WAIT_S } from '../subscription/schema';
import type { Subscriber } from '../subscription/subscriber';
import type { Ledger, Quarantine, QuarantineItem } from '../types';
import { decodeEnvelope, LANE_ATTRIBUTE, type LaneEnvelope, MAX_DELAY_S } from './envelope';
import type { LaneMessage, LaneSender } from './park';

/** What serving one lane batch needs: its endpoint and the side effects, each bounded by a deadline signal. */
export interface LaneServeDeps {
  endpoint: string;
  /** Undefined when the endpoint is no longer configured: its lane's messages can go nowhere. */
  subscriber: Subscriber | undefined;
  schedule: readonly number[];
  paused: boolean;
  maxEventBytes: number;
  send: LaneSender;
  quarantine: Quarantine | undefined;
  ledger: Ledger | undefined;
  /** Deliveries run under its signal (the delivery deadline). */
  fanoutContext: FanoutContext;
  /** Sends, quarantine and ledger writes run under this one (the settle deadline). */
  sideSignal: AbortSignal;
  /** The record as SQS handed it (a gzip'd body still packed): what the quarantine sends, so it fits as it did. */
  asReceived?: (record: SQSRecord) => SQSRecord;
  logger: Logger;
  metrics: Metrics;
  now?: () => number;
}

/**
 * A paused lane's record goes back for this long. On AWS the paused lane's mapping is disabled, so only records
 * received around the pause come here (a lane batch re-reads the tag, so a resume is seen at once): a short wait lets
 * a resume that quickly follows a pause take effect within a minute, not 15, at one send per such record per minute.
 */
export const PAUSED_REDELAY_S = 60;

/** No wait is longer than a schedule's longest step; a hop more for clocks that disagree. */
const MAX_DUE_AHEAD_MS = (MAX_RETRY_WAIT_S + MAX_DELAY_S) * 1000;

/** What one lane record calls for; acknowledged only once its side effect is confirmed. */
type Step =
  | { kind: 'ack' }
  /** Its endpoint's filter no longer matches the event: acknowledged, nothing sent (not to be logged as delivered). */
  | { kind: 'unrouted' }
  | { kind: 'resend'; message: LaneMessage }
  | { kind: 'quarantine'; item: QuarantineItem }
  | { kind: 'retry' };

/** Counts for the batch's log line and metrics. */
interface LaneCounts {
  delivered: number;
  /** Keys of the events delivered now, for the ledger. */
  deliveredKeys: string[];
  exhausted: number;
  oldestAgeMs: number;
}

const resend = (record: SQSRecord, envelope: LaneEnvelope, delayS: number): Step => ({
  kind: 'resend',
  message: { record, envelope, delaySeconds: Math.min(MAX_DELAY_S, Math.max(0, Math.ceil(delayS))) },
});

function quarantined(deps: LaneServeDeps, record: SQSRecord, reason: QuarantineItem['reason'], detail: string): Step {
  return { kind: 'quarantine', item: { record, reason, detail, endpoint: deps.endpoint } };
}

/** A record that is not due (or whose endpoint is paused) goes back delayed; a due one is left to deliver. */
function planRecord(deps: LaneServeDeps, record: SQSRecord, now: number, counts: LaneCounts): Step | LaneEnvelope {
  const decoded = decodeEnvelope(record, deps.endpoint);
  if (!decoded.ok) return quarantined(deps, record, 'lane-envelope-invalid', decoded.reason);
  // A DLQ copy a redrive moved back starts the endpoint's schedule afresh (due now), not one attempt from exhausted.
  const envelope = cameThroughRedrive(record)
    ? { ...decoded.envelope, a: 1, d: Math.min(decoded.envelope.d, now) }
    : decoded.envelope;
  counts.oldestAgeMs = Math.max(counts.oldestAgeMs, now - envelope.f);
  // Sent back every 15 min, each send renewing its retention, such a record would never be delivered nor expire.
  if (envelope.d - now > MAX_DUE_AHEAD_MS) {
    const detail = `'d' is ${Math.round((envelope.d - now) / 1000)} s ahead; no lane wait is over ${MAX_RETRY_WAIT_S} s`;
    return quarantined(deps, record, 'lane-envelope-invalid', detail);
  }
  if (!deps.subscriber) {
    return quarantined(deps, record, 'lane-envelope-invalid', `endpoint '${deps.endpoint}' is not configured`);
  }
  // Waiting in the queue, never invisible: the lane holds no message in flight for a backoff.
  if (deps.paused) return resend(record, envelope, PAUSED_REDELAY_S);
  if (now < envelope.d) return resend(record, envelope, (envelope.d - now) / 1000);
  return envelope;
}

/**
 * After a delivery: delivered → ack; not routed (the filter changed) → unrouted; rejected → quarantine; failed → the
 * next wait, or the DLQ once exhausted.
 */
function afterDelivery(
  deps: LaneServeDeps,
  record: SQSRecord,
  envelope: LaneEnvelope,
  result: DeliveryResult | undefined,
  counts: LaneCounts,
): Step {
  if (!result) return { kind: 'unrouted' };
  if (result.ok) {
    counts.delivered++;
    counts.deliveredKeys.push(envelope.k);
    return { kind: 'ack' };
  }
  if (result.kind === 'rejected') {
    return {
      kind: 'quarantine',
      item: {
        record,
        reason: 'rejected-by-endpoint',
        detail: `${deps.endpoint} answered ${result.status}`,
        endpoint: deps.endpoint,
        ...(result.status !== undefined ? { status: result.status } : {}),
      },
    };
  }
  // Never sent, its rate-limit token not come by the deadline: back in the lane, same attempt, so a slow endpoint's
  // backlog does not climb the lane's maxReceiveCount (the DLQ) while it drains at the endpoint's rate.
  if (result.kind === 'aborted' && result.error === 'RATE_LIMIT_WAIT') return resend(record, envelope, 0);
  // Cut off by the deadline: not the endpoint's failure; back after the visibility timeout.
  if (result.kind === 'aborted') return { kind: 'retry' };
  const now = deps.now?.() ?? Date.now();
  if (result.kind === 'circuit-open') {
    // Refused by the breaker, never sent: not an attempt. The same wait again, for the same attempt.
    const waitS = deps.schedule[envelope.a - 1] ?? deps.schedule.at(-1) ?? MAX_DELAY_S;
    return resend(record, { ...envelope, d: now + waitS * 1000 }, waitS);
  }
  const attempts = envelope.a + 1;
  if (attempts > deps.schedule.length) {
    counts.exhausted++;
    const detail = `${deps.endpoint}: ${attempts} attempts failed, the last ${result.status ?? result.error ?? result.kind}`;
    return quarantined(deps, record, 'retries-exhausted', detail);
  }
  const waitS = deps.schedule[attempts - 1]!;
  return resend(record, { ...envelope, a: attempts, d: now + waitS * 1000 }, waitS);
}

/** Delivers the due records to the lane's endpoint only (skipping what the ledger says it has); one step each. */
async function deliverDue(
  deps: LaneServeDeps,
  due: { index: number; record: SQSRecord; envelope: LaneEnvelope }[],
  counts: LaneCounts,
): Promise<Map<number, Step>> {
  const steps = new Map<number, Step>();
  const { subscriber } = deps;
  if (!subscriber) return steps;
  const ready: ((typeof due)[number] & { event: ValidEvent })[] = [];
  for (const item of due) {
    const event = parseEvent(item.record.body, deps.maxEventBytes);
    if (!event.ok) steps.set(item.index, quarantined(deps, item.record, event.reason, event.detail));
    // The ledger is asked about `k`: one naming another event would have this one acknowledged undelivered.
    else if (event.key !== item.envelope.k) {
      const detail = `'${LANE_ATTRIBUTE}' key 'k' is not the key of the event in the body`;
      steps.set(item.index, quarantined(deps, item.record, 'lane-envelope-invalid', detail));
    } else ready.push({ ...item, event });
  }
  const known = await lookupDelivered(
    deps,
    ready.map((item) => item.envelope.k),
  );
  await Promise.all(
    ready.map(async ({ index, record, envelope, event }) => {
      if (known.has(envelope.k)) return steps.set(index, { kind: 'ack' });
      const fan = await fanout(event, [subscriber], undefined, deps.fanoutContext);
      return steps.set(index, afterDelivery(deps, record, envelope, fan.results[0], counts));
    }),
  );
  return steps;
}

/**
 * The ledger name of "the lane delivered it to E": not E itself, which the source path writes when it PARKS the event
 * (so a redelivery skips E); reading that as delivered would acknowledge the lane's only copy undelivered.
 * Endpoint names are lowercase letters, digits and dashes, so this never names an endpoint.
 */
export function laneLedgerName(endpoint: string): string {
  return `lane:${endpoint}`;
}

async function lookupDelivered(deps: LaneServeDeps, keys: string[]): Promise<Set<string>> {
  if (!deps.ledger || keys.length === 0) return new Set();
  const name = laneLedgerName(deps.endpoint);
  try {
    const found = await deps.ledger.lookup(keys, deps.fanoutContext.signal, () => [name]);
    return new Set(keys.filter((key) => found.get(key)?.has(name)));
  } catch (error) {
    deps.logger.warn('delivery ledger unavailable; delivering every due lane record', { error: errorText(error) });
    return new Set();
  }
}

/** Runs the sends and quarantines the steps call for; resolves with the ids confirmed done (safe to acknowledge). */
async function applySteps(
  deps: LaneServeDeps,
  records: readonly SQSRecord[],
  steps: Step[],
  deliveredKeys: readonly string[],
): Promise<Set<string>> {
  const done = new Set<string>();
  const sends: { id: string; message: LaneMessage }[] = [];
  const poison: QuarantineItem[] = [];
  steps.forEach((step, index) => {
    const id = records[index]!.messageId;
    if (step.kind === 'ack' || step.kind === 'unrouted') done.add(id);
    else if (step.kind === 'resend') sends.push({ id, message: step.message });
    else if (step.kind === 'quarantine') poison.push(step.item);
  });
  const [sent, safe] = await Promise.all([
    sends.length > 0
      ? deps.send(
          sends.map((s) => s.message),
          deps.sideSignal,
        )
      : undefined,
    quarantine(deps, poison),
    recordDelivered(deps, deliveredKeys),
  ]);
  sends.forEach((s, index) => {
    if (sent?.parked[index]) done.add(s.id);
  });
  if (sent && sent.errors.length > 0) {
    deps.logger.warn('lane records not sent back to the lane; they come back after the visibility timeout', {
      endpoint: deps.endpoint,
      errors: sent.errors.slice(0, 5),
    });
  }
  for (const id of safe) done.add(id);
  return done;
}

/** The ledger learns what the lane delivered, so a duplicate lane message is not delivered again; never throws. */
async function recordDelivered(deps: LaneServeDeps, keys: readonly string[]): Promise<void> {
  if (!deps.ledger || keys.length === 0) return;
  try {
    await deps.ledger.record(
      keys.map((key) => ({ key, endpoint: laneLedgerName(deps.endpoint) })),
      deps.sideSignal,
    );
  } catch (error) {
    deps.logger.warn('delivery ledger not updated for lane deliveries; a duplicate would be delivered again', {
      endpoint: deps.endpoint,
      error: errorText(error),
    });
  }
}

const LANE_NOT_QUARANTINED =
  "lane record not quarantined (no QUARANTINE_QUEUE_URL); reported failed, it comes back until the lane's redrive policy moves it to the DLQ";

async function quarantine(deps: LaneServeDeps, items: QuarantineItem[]): Promise<Set<string>> {
  if (items.length === 0) return new Set();
  // Without a quarantine queue nothing is sent: the record stays failed, as on the source path.
  const message = deps.quarantine ? 'lane record to the quarantine' : LANE_NOT_QUARANTINED;
  for (const item of items) {
    deps.logger.warn(message, {
      endpoint: deps.endpoint,
      reason: item.reason,
      detail: item.detail,
      eventId: eventIdOf(item.record.body),
      messageId: item.record.messageId,
    });
  }
  if (!deps.quarantine) return new Set();
  const { asReceived } = deps;
  const packed = asReceived ? items.map((item) => ({ ...item, record: asReceived(item.record) })) : items;
  try {
    return await deps.quarantine.send(packed, deps.sideSignal);
  } catch (error) {
    deps.logger.error('quarantine failed; the lane records stay on the lane', { error: errorText(error) });
    return new Set();
  }
}

/**
 * A lane batch of one endpoint: a record not yet due goes back to the lane delayed, a due one is delivered to that
 * endpoint only; each is acknowledged once its delivery, send or quarantine is confirmed. Resolves with the ids to
 * report failed.
 */
export async function serveLane(records: readonly SQSRecord[], deps: LaneServeDeps): Promise<Set<string>> {
  const now = deps.now?.() ?? Date.now();
  const counts: LaneCounts = { delivered: 0, deliveredKeys: [], exhausted: 0, oldestAgeMs: 0 };
  const steps: Step[] = new Array(records.length);
  const due: { index: number; record: SQSRecord; envelope: LaneEnvelope }[] = [];
  records.forEach((record, index) => {
    const planned = planRecord(deps, record, now, counts);
    if ('kind' in planned) steps[index] = planned;
    else due.push({ index, record, envelope: planned });
  });
  if (due.length > 0) for (const [index, step] of await deliverDue(deps, due, counts)) steps[index] = step;
  const done = await applySteps(deps, records, steps, counts.deliveredKeys);
  const failed = new Set(records.map((record) => record.messageId).filter((id) => !done.has(id)));
  publishLaneMetrics(deps, counts);
  // Which events this batch delivered and sent back to wait, comma-joined: the event history finds them by id.
  const idsOf = (kind: Step['kind']) =>
    records
      .filter((record, index) => steps[index]?.kind === kind && done.has(record.messageId))
      .map((record) => eventIdOf(record.body))
      .join(',');
  deps.logger.info('lane batch processed', {
    endpoint: deps.endpoint,
    records: records.length,
    acknowledged: records.length - failed.size,
    failed: failed.size,
    delivered: counts.delivered,
    exhausted: counts.exhausted,
    oldestAgeS: Math.round(counts.oldestAgeMs / 1000),
    deliveredEventIds: idsOf('ack'),
    waitingEventIds: idsOf('resend'),
  });
  // Rare (the endpoint's filter changed since the park): a line of its own, found by the event history's eventIds.
  const unrouted = idsOf('unrouted');
  if (unrouted) {
    deps.logger.info('lane records no longer routed to their endpoint; acknowledged', {
      endpoint: deps.endpoint,
      eventIds: unrouted,
    });
  }
  return failed;
}

function publishLaneMetrics(deps: LaneServeDeps, counts: LaneCounts): void {
  const { metrics } = deps;
  metrics.addMetric(MetricName.LaneDelivered, MetricUnit.Count, counts.delivered);
  metrics.addMetric(MetricName.RetriesExhausted, MetricUnit.Count, counts.exhausted);
  metrics.addMetric(MetricName.LaneBacklogAgeS, MetricUnit.Seconds, Math.max(0, Math.round(counts.oldestAgeMs / 1000)));
  metrics.publishStoredMetrics();
}
