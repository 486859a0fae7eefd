import type { SQSBatchResponse } from 'aws-lambda';
import { LANE_ATTRIBUTE, type LaneEnvelope } from '../../lib/lanes';
import type { QuarantineItem } from '../../lib/types';
import type { FuzzEndpoint } from './endpoint';
import { checkLedger, checkLogs, type Fail, InvariantViolation } from './invariants';
import { type LaneRound, pair } from './lanes';
import type { LaneSpec, ModelRecord } from './scenario';

/**
 * L3's bound on the messages received and not acknowledged on one queue: rate × (invocation time + PARK_AFTER_S) + a
 * batch, with time in the scenario's virtual seconds (an invocation stands for `intervalS`, its time) and the rate the
 * most a queue receives per invocation (`perInvocation` / intervalS).
 */
export function inFlightBound(lanes: LaneSpec, perInvocation: number, batch: number): { bound: number; text: string } {
  const { intervalS, parkAfterS } = lanes;
  const bound = Math.ceil((perInvocation * (intervalS + parkAfterS)) / intervalS) + batch;
  return {
    bound,
    text:
      `rate × (invocation time + PARK_AFTER_S) + a batch = ${perInvocation}/${intervalS} s × ` +
      `(${intervalS} s + ${parkAfterS} s) + ${batch} = ${bound}`,
  };
}

/** What one lane invocation did. */
export interface LaneObservation {
  index: number;
  round: LaneRound;
  response: SQSBatchResponse;
  answeredAt: number;
  deadlineAt: number;
  endpoints: FuzzEndpoint[];
  ledgerBefore: Map<string, Set<string>> | undefined;
  ledgerAfter: Map<string, Set<string>> | undefined;
  quarantine: { sent: QuarantineItem[]; confirmed: Map<string, number> } | undefined;
  parked: { now: ReadonlySet<string>; ever: ReadonlySet<string> };
  problems: Array<{ rule: string; detail: string }>;
  output: string;
  secrets: readonly string[];
  /** Message ids of copies the harness put in this lane from another's ('stray'). */
  strays: ReadonlySet<string>;
  /** The lane endpoint's retrySchedule. */
  schedule: readonly number[];
  /** L3's bound for the lane (held records a failing side effect excuses are left out of the count). */
  bound: { bound: number; text: string };
  /** Per endpoint, how each request the product sent it in this invocation ended (lib/observability traceRequests). */
  attempts: ReadonlyMap<string, readonly string[]>;
  /** The lane endpoint authenticates with OAuth and its token server failed lately: no request goes out (see I4). */
  tokenHeld: boolean;
}

const envelopeOf = (attributes: Record<string, { stringValue?: string }>): Partial<LaneEnvelope> =>
  JSON.parse(attributes[LANE_ATTRIBUTE]?.stringValue ?? '{}') as Partial<LaneEnvelope>;
const keyOf = (attributes: Record<string, { stringValue?: string }>): string => envelopeOf(attributes).k ?? '';

/**
 * Did the product try to deliver the event of `item` to `endpoint` in this invocation? The endpoint read a request of
 * it, or a request the product sent went unread (cut by the product's timeout first: it may be this one), or the
 * failure is the token's, as the product says and the harness knows its OAuth server failed lately (no token, no
 * request goes out).
 */
function triedNow(o: LaneObservation, endpoint: FuzzEndpoint, item: QuarantineItem): boolean {
  if (endpoint.readNow.has(keyOf(item.record.messageAttributes))) return true;
  if (o.tokenHeld && item.detail.includes('OAuth token')) return true;
  return (o.attempts.get(endpoint.name)?.length ?? 0) > endpoint.requestsNow;
}

/**
 * L1 for what a lane quarantines: only with its own endpoint named, and only an event the endpoint blamed (400, 413,
 * 415, 422) or one whose retrySchedule is spent by a failed delivery in this invocation (the fuzz puts no invalid
 * envelope in a lane).
 */
function checkLaneQuarantine(o: LaneObservation, endpoint: FuzzEndpoint, fail: Fail): void {
  for (const item of o.quarantine?.sent ?? []) {
    const envelope = envelopeOf(item.record.messageAttributes);
    const id = item.record.messageId;
    if (item.endpoint !== endpoint.name) fail('L1', `quarantine item (${item.reason}) names '${item.endpoint}'`);
    if (item.reason === 'rejected-by-endpoint' && !endpoint.blamedNow.has(envelope.k ?? '')) {
      fail('L1-4xx', `${id} was quarantined (${item.detail}) though ${endpoint.name} answered no 400/413/415/422`);
    } else if (item.reason === 'retries-exhausted' && (envelope.a ?? 0) < o.schedule.length) {
      fail(
        'L1',
        `${id} was dead-lettered as retries-exhausted after ${envelope.a} failed deliveries; the retrySchedule ` +
          `(${o.schedule.join(', ')}) allows ${o.schedule.length + 1}`,
      );
    } else if (item.reason === 'retries-exhausted' && !triedNow(o, endpoint, item)) {
      fail(
        'L1',
        `${id} was dead-lettered as retries-exhausted (${item.detail}) though the product sent ${endpoint.name} no ` +
          'request of it in this invocation: a refusal by its breaker or a cut by the deadline is no failed delivery',
      );
    } else if (o.strays.has(id) && item.reason !== 'lane-envelope-invalid') {
      fail('L1', `${id}, another endpoint's message, was quarantined as ${item.reason}, not lane-envelope-invalid`);
    } else if (!o.strays.has(id) && item.reason !== 'rejected-by-endpoint' && item.reason !== 'retries-exhausted') {
      fail('L1', `${id} was quarantined (${item.reason}: ${item.detail}) though its envelope and event are valid`);
    }
  }
}

/**
 * A lane invocation: I2, I5, I7 and the ledger as for the source; L1: a lane record is acknowledged only once its
 * endpoint took it (now, or earlier per the ledger's `lane:` entry), the lane holds it again (a send succeeded), or it
 * is confirmed in the quarantine naming the endpoint; L3: the lane's in-flight count stays under its bound.
 */
export function checkLaneRound(o: LaneObservation): void {
  const fail: Fail = (invariant, detail) => {
    throw new InvariantViolation(invariant, o.index, `lane ${o.round.endpoint}: ${detail}`);
  };
  const endpoint = o.endpoints.find((e) => e.name === o.round.endpoint)!;
  const ids = new Set(o.round.records.map((record) => record.messageId));
  const failedIds = o.response.batchItemFailures.map((item) => item.itemIdentifier);
  const failed = new Set(failedIds);
  if (o.answeredAt > o.deadlineAt) fail('I2', `answered ${o.answeredAt - o.deadlineAt} ms after the deadline`);
  if (failed.size !== failedIds.length || failedIds.some((id) => !ids.has(id))) {
    fail('I2', `batchItemFailures ${failedIds.join(', ')} are not distinct ids of the batch`);
  }
  for (const { rule, detail } of o.problems) fail(rule, detail);
  const confirmed = o.quarantine?.confirmed ?? new Map<string, number>();
  checkLaneQuarantine(o, endpoint, fail);
  for (const record of o.round.records) {
    if (failed.has(record.messageId) || confirmed.has(record.messageId)) continue;
    if (o.strays.has(record.messageId)) {
      fail('L1', `${record.messageId}, another endpoint's message, was acknowledged but not quarantined`);
    }
    const key = keyOf(record.messageAttributes);
    const now = endpoint.acceptedNow.has(key);
    const before = o.ledgerBefore?.get(key)?.has(`lane:${endpoint.name}`) && endpoint.acceptedAt.has(key);
    if (!now && !before && !o.parked.now.has(pair(key, endpoint.name))) {
      fail(
        'L1',
        `lane record ${record.messageId} was acknowledged but ${endpoint.name} never took it with a complete 2xx, ` +
          'no send back to the lane succeeded, and it is not confirmed in the quarantine',
      );
    }
  }
  checkLedger(o, fail);
  checkLogs(o, '"lane batch processed"', fail);
  if (o.round.inFlight > o.bound.bound) {
    fail(
      'L3',
      `${o.round.inFlight} messages received and not acknowledged on the lane queue (a batch of ` +
        `${o.round.records.length}, the rest held in flight though they were not due or the endpoint was paused); ` +
        `the bound is ${o.bound.text}`,
    );
  }
}

/**
 * L2, once the scenario has drained: every routed (event, endpoint) pair ended delivered, quarantined (the record, or
 * its lane copy naming the endpoint) or dead-lettered with the endpoint named (`retries-exhausted`).
 */
export function checkEndState(
  records: readonly ModelRecord[],
  endpoints: readonly FuzzEndpoint[],
  settled: readonly QuarantineItem[],
  index: number,
): void {
  const quarantinedIds = new Set<string>();
  const laneEnded = new Set<string>();
  for (const item of settled) {
    const laneKey = item.record.messageAttributes?.[LANE_ATTRIBUTE] ? keyOf(item.record.messageAttributes) : undefined;
    const ended = item.reason === 'retries-exhausted' || item.reason === 'rejected-by-endpoint';
    if (laneKey !== undefined && item.endpoint && ended) laneEnded.add(pair(laneKey, item.endpoint));
    else quarantinedIds.add(item.record.messageId);
  }
  // The source path quarantines a whole record (an endpoint blamed the event): every copy of the event ends there.
  const quarantinedKeys = new Set(records.filter((r) => quarantinedIds.has(r.record.messageId)).map((r) => r.key));
  for (const record of records) {
    if (record.poison || quarantinedKeys.has(record.key)) continue;
    for (const endpoint of endpoints) {
      if (!record.routed.has(endpoint.name) || endpoint.acceptedAt.has(record.key)) continue;
      if (laneEnded.has(pair(record.key, endpoint.name))) continue;
      throw new InvariantViolation(
        'L2',
        index,
        `${record.record.messageId} (${record.spec.kind}) is routed to ${endpoint.name}, which never took it with a ` +
          'complete 2xx, and it is neither quarantined nor dead-lettered naming the endpoint (retries-exhausted)',
      );
    }
  }
}
