import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { SQSRecord } from 'aws-lambda';
import type { ProcessedRecord } from '../batch/batch';
import { eventIdOf } from '../event';
import { MetricName, MetricUnit } from '../observability/observability';
import { GROUPED_IDS_PER_LINE } from '../settle/settle';
import type { DeliveryFailure, RecordOutcome } from '../types';
import type { LaneMessage, LaneSender } from './park';

/** What the source path's park step needs; `signal` is the settle deadline's (the sends are a side effect). */
export interface ParkDeps {
  send: LaneSender;
  parkAfterS: number;
  schedule: (endpoint: string) => readonly number[];
  /** This batch's paused endpoints (their lanes' tags): their events park at once. */
  paused: (endpoint: string) => boolean;
  signal: AbortSignal;
  logger: Logger;
  perEndpointMetrics: ReadonlyMap<string, Metrics>;
  now?: () => number;
}

type Failed = Extract<RecordOutcome, { kind: 'failed' }>;

/** When SQS first handed the record out (else when it was sent), in ms; NaN when neither is known. */
function firstReceivedAt(record: SQSRecord): number {
  return Number(record.attributes?.ApproximateFirstReceiveTimestamp ?? record.attributes?.SentTimestamp);
}

/** Failures that go to the lane: paused, breaker open, or failing longer than PARK_AFTER_S. Never FIFO records. */
function parkable(deps: ParkDeps, item: ProcessedRecord, now: number): DeliveryFailure[] {
  if (item.outcome.kind !== 'failed' || !item.event.ok || item.record.attributes?.MessageGroupId !== undefined)
    return [];
  const ageMs = now - firstReceivedAt(item.record);
  const old = ageMs >= deps.parkAfterS * 1000;
  return item.outcome.failures.filter(
    (failure) => old || failure.kind === 'circuit-open' || deps.paused(failure.endpoint),
  );
}

/** The record's outcome with the parked endpoints counted done: delivered once nothing else failed. */
function withParked(outcome: Failed, parked: ReadonlySet<string>): RecordOutcome {
  const names = outcome.failures.filter((f) => parked.has(f.endpoint)).map((f) => f.endpoint);
  if (names.length === 0) return outcome;
  const failures = outcome.failures.filter((f) => !parked.has(f.endpoint));
  // The ledger's skipped endpoints stay: settle renews their entries for a new message, as without a park.
  const skipped = outcome.skipped ?? [];
  if (failures.length === 0) return { kind: 'delivered', delivered: outcome.delivered, skipped, parked: names };
  const retryAfterS = Math.max(0, ...failures.map((f) => f.retryAfterS ?? 0));
  return {
    kind: 'failed',
    failures,
    delivered: outcome.delivered,
    skipped,
    parked: names,
    ...(retryAfterS > 0 ? { retryAfterS } : {}),
  };
}

/**
 * The source path's park step, between fan-out and settle: each long-failing (or breaker-refused, or paused)
 * endpoint of a record gets the event in its own lane; an endpoint whose send is confirmed counts as done, so the
 * record is acknowledged once every routed endpoint has it or holds it. A send that fails parks nothing.
 */
export async function parkFailures(processed: ProcessedRecord[], deps: ParkDeps): Promise<ProcessedRecord[]> {
  const now = deps.now?.() ?? Date.now();
  const messages: LaneMessage[] = [];
  // One lane message per (event, endpoint), shared by duplicate records of the event in the batch.
  const slots = new Map<string, number>();
  // Per lane message, the message ids of the records it stands for (the log names each).
  const recordIds: string[][] = [];
  const wanted = processed.map((item) =>
    parkable(deps, item, now).map((failure) => {
      const key = item.event.ok ? item.event.key : '';
      const slot = `${key}\u0000${failure.endpoint}`;
      let index = slots.get(slot);
      if (index === undefined) {
        index = messages.push(laneMessage(deps, item.record, key, failure.endpoint, now)) - 1;
        slots.set(slot, index);
        recordIds[index] = [];
      }
      recordIds[index]!.push(item.record.messageId);
      return { endpoint: failure.endpoint, index };
    }),
  );
  if (messages.length === 0) return processed;
  const { parked, errors } = await deps.send(messages, deps.signal);
  report(deps, messages, recordIds, parked, errors);
  return processed.map((item, i) => {
    const done = new Set(wanted[i]!.filter((w) => parked[w.index]).map((w) => w.endpoint));
    return done.size === 0 ? item : { ...item, outcome: withParked(item.outcome as Failed, done) };
  });
}

function laneMessage(deps: ParkDeps, record: SQSRecord, key: string, endpoint: string, now: number): LaneMessage {
  const firstWaitS = deps.schedule(endpoint)[0] ?? 0;
  const first = firstReceivedAt(record);
  return {
    record,
    envelope: { e: endpoint, k: key, f: Number.isFinite(first) ? first : now, a: 1, d: now + firstWaitS * 1000 },
    // Paused: into the lane at once, which re-delays it until the endpoint is resumed.
    delaySeconds: deps.paused(endpoint) ? 0 : firstWaitS,
  };
}

function report(
  deps: ParkDeps,
  messages: LaneMessage[],
  recordIds: string[][],
  parked: boolean[],
  errors: string[],
): void {
  const byEndpoint = new Map<string, { message: LaneMessage; ids: string[] }[]>();
  messages.forEach((message, index) => {
    const list = byEndpoint.get(message.envelope.e) ?? [];
    if (parked[index]) list.push({ message, ids: recordIds[index]! });
    byEndpoint.set(message.envelope.e, list);
  });
  for (const [endpoint, list] of byEndpoint) {
    deps.perEndpointMetrics.get(endpoint)?.addMetric(MetricName.EventsParked, MetricUnit.Count, list.length);
    // Every id, comma-joined (as the grouped failure lines), so the event history finds each parked event.
    for (let i = 0; i < list.length; i += GROUPED_IDS_PER_LINE) {
      const chunk = list.slice(i, i + GROUPED_IDS_PER_LINE);
      deps.logger.info('events parked in the endpoint lane', {
        endpoint,
        events: list.length,
        messageIds: chunk.flatMap((m) => m.ids).join(','),
        eventIds: chunk.map((m) => eventIdOf(m.message.record.body)).join(','),
      });
    }
  }
  if (errors.length > 0) {
    deps.logger.warn('events not parked; their records stay failed and come back', {
      errors: errors.slice(0, 5),
      hint: 'check LANE_QUEUE_URL_PREFIX, that each lane queue exists and that the function may sqs:SendMessage to it',
    });
  }
}
