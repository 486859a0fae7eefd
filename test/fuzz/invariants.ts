import type { SQSBatchResponse } from 'aws-lambda';
import type { QuarantineItem } from '../../lib/types';
import type { FuzzEndpoint } from './endpoint';
import { pair } from './lanes';
import { CREDENTIAL_MARK, type ModelRecord, PAYLOAD_MARK, type Scenario } from './scenario';

/** What one invocation did, as seen from outside the handler. */
export interface Observation {
  scenario: Scenario;
  index: number;
  recovery: boolean;
  /** The last recovery invocation the harness runs (see MAX_RECOVERIES): I4 gets no further chance. */
  lastRecovery: boolean;
  batch: ModelRecord[];
  response: SQSBatchResponse;
  answeredAt: number;
  deadlineAt: number;
  endpoints: FuzzEndpoint[];
  /** Per endpoint, how each request the product sent it in this invocation ended ('200', 'TIMEOUT', ...). */
  attempts: ReadonlyMap<string, readonly string[]>;
  /** Per endpoint, how many requests undici wrote to a socket in this invocation. */
  written: ReadonlyMap<string, number>;
  /** Recovery only: the longest the event loop (product and endpoints alike) was held up, in ms. */
  loopDelayMaxMs?: number;
  ledgerBefore: Map<string, Set<string>> | undefined;
  ledgerAfter: Map<string, Set<string>> | undefined;
  quarantine: { sent: QuarantineItem[]; confirmed: Map<string, number> } | undefined;
  visibility: Array<{ receiptHandle: string; seconds: number }>;
  output: string;
  /** What the endpoints' verifiers found wrong in the requests they read (routing, content mode, signature, auth). */
  problems: Array<{ rule: string; detail: string }>;
  /** When the OAuth token endpoint last failed a request (Date.now()), if it ever did. */
  tokenFailedAt: number | undefined;
  /** The endpoints file's secret values. */
  secrets: readonly string[];
  /** Lanes scenarios: the (key, endpoint) pairs a lane durably holds since the invocation began, and ever (`pair`). */
  parked?: { now: ReadonlySet<string>; ever: ReadonlySet<string> };
}

export class InvariantViolation extends Error {
  override readonly name = 'InvariantViolation';
  constructor(
    readonly invariant: string,
    invocation: number,
    detail: string,
  ) {
    super(`${invariant} broken in invocation ${invocation + 1}: ${detail}`);
  }
}

/** Checks I1–I7 (I1–I6 of issue 9; I7: each request as its endpoint's file entry says); throws at the first broken. */
export function checkInvariants(o: Observation, ignored: ReadonlySet<string> = new Set()): void {
  const fail = (invariant: string, detail: string) => {
    if (!ignored.has(invariant)) throw new InvariantViolation(invariant, o.index, detail);
  };
  const batchIds = new Set(o.batch.map((item) => item.record.messageId));
  const failedIds = o.response.batchItemFailures.map((item) => item.itemIdentifier);
  const failed = new Set(failedIds);

  // I2: in time, only ids of the batch, each once.
  if (o.answeredAt > o.deadlineAt) fail('I2', `answered ${o.answeredAt - o.deadlineAt} ms after the deadline`);
  if (failed.size !== failedIds.length) fail('I2', `an id is listed twice: ${failedIds.join(', ')}`);
  for (const id of failedIds) if (!batchIds.has(id)) fail('I2', `'${id}' is not a messageId of the batch`);

  const blamed = (key: string) => o.endpoints.some((endpoint) => endpoint.blamedNow.has(key));
  // I1, 4xx rule: only poison is quarantined (invalid records, or a 400/413/415/422 from an endpoint).
  for (const item of o.quarantine?.sent ?? []) {
    const model = o.batch.find((entry) => entry.record.messageId === item.record.messageId)!;
    if (!model.poison && !blamed(model.key)) {
      fail(
        'I1-4xx',
        `${model.record.messageId} (${model.spec.kind}) was quarantined (${item.reason}: ${item.detail}) ` +
          'though it is a valid event and no endpoint answered 400/413/415/422',
      );
    }
  }

  // I1, routing, and I7: what the endpoints' own verifiers found.
  for (const { rule, detail } of o.problems) fail(rule, detail);

  // I1: every acknowledged message is confirmed in quarantine or accepted with a complete 2xx where it is routed.
  const confirmed = o.quarantine?.confirmed ?? new Map<string, number>();
  for (const item of o.batch) {
    const id = item.record.messageId;
    if (failed.has(id) || confirmed.has(id)) continue;
    if (item.poison) fail('I1', `${id} (${item.spec.kind}) was acknowledged but is not confirmed in quarantine`);
    for (const endpoint of o.endpoints) {
      if (!item.routed.has(endpoint.name)) continue;
      const now = endpoint.acceptedNow.has(item.key);
      const parkedNow = o.parked?.now.has(pair(item.key, endpoint.name));
      // The source path writes a parked endpoint to the ledger as done: the lane holds the event.
      const heldBefore = endpoint.acceptedAt.has(item.key) || o.parked?.ever.has(pair(item.key, endpoint.name));
      const before = o.ledgerBefore?.get(item.key)?.has(endpoint.name) && heldBefore;
      if (!now && !before && !parkedNow) {
        fail(
          'I1',
          `${id} (${item.spec.kind}) was acknowledged but ${endpoint.name}, to which it is routed, never took it with ` +
            `a complete 2xx${o.parked ? ' nor does its lane hold it (no lane send succeeded)' : ''}`,
        );
      }
    }
  }
  checkLedger(o, fail);

  if (o.scenario.fifo) checkFifo(o, failed, confirmed, fail);

  if (o.recovery) checkRecovery(o, fail);

  checkLogs(o, '"batch processed"', fail);

  // I6: the visibility delay never exceeds RETRY_MAX_DELAY_S.
  for (const { receiptHandle, seconds } of o.visibility) {
    if (seconds > o.scenario.retryMaxDelayS) {
      fail(
        'I6',
        `visibility ${seconds} s asked for ${receiptHandle}; RETRY_MAX_DELAY_S is ${o.scenario.retryMaxDelayS}`,
      );
    }
  }
}

export type Fail = (invariant: string, detail: string) => void;

/**
 * I1, ledger: an entry says an endpoint took the event (it must have, with a complete 2xx) or, with lanes, that its
 * lane holds it (a lane send for it succeeded); `lane:<endpoint>` says the lane delivered it (a complete 2xx).
 */
export function checkLedger(o: Pick<Observation, 'ledgerAfter' | 'endpoints' | 'parked'>, fail: Fail): void {
  for (const [key, names] of o.ledgerAfter ?? []) {
    for (const name of names) {
      const endpoint = o.endpoints.find((e) => e.name === name.replace(/^lane:/, ''));
      const parked = !name.startsWith('lane:') && o.parked?.ever.has(pair(key, name));
      if (!endpoint?.acceptedAt.has(key) && !parked) {
        fail(
          'I1-ledger',
          `the ledger says ${name} took ${key.slice(0, 12)}… but it never answered it with a complete 2xx` +
            `${o.parked && !name.startsWith('lane:') ? ' and no lane send of it succeeded' : ''}`,
        );
      }
    }
  }
}

/** I5: no payload bytes, no credential in any log line (and the log lines, with `summary`, were really captured). */
export function checkLogs(o: Pick<Observation, 'output' | 'secrets'>, summary: string, fail: Fail): void {
  if (!o.output.includes(summary)) fail('harness', 'no summary line captured: I5 would check nothing');
  if (o.output.includes(PAYLOAD_MARK))
    fail('I5', `a log line holds payload bytes: ${lineWith(o.output, PAYLOAD_MARK)}`);
  if (o.output.includes(CREDENTIAL_MARK))
    fail('I5', `a log line holds a credential: ${lineWith(o.output, CREDENTIAL_MARK)}`);
  const secret = o.secrets.find((value) => o.output.includes(value));
  if (secret) fail('I5', `a log line holds a signing secret: ${lineWith(o.output, secret)}`);
}

/**
 * I4, cleared: in this recovery the product saw the endpoint answer 2xx, or the endpoint read a request for an event
 * new in this invocation. Neither counts a late request of the invocation before (its key is an older event's).
 */
export function recovered(o: Observation, endpoint: FuzzEndpoint): boolean {
  if (tokenHeld(o, endpoint)) return true;
  const sent = o.attempts.get(endpoint.name) ?? [];
  if (sent.some((ended) => /^2\d\d$/.test(ended))) return true;
  return o.batch.some(
    (item) => item.record.attributes.ApproximateReceiveCount === '1' && endpoint.readNow.has(item.key),
  );
}

/**
 * lib/subscription/oauth.ts answers a failed token request's error, without asking again, for FAILED_HOLD_MS (5 s):
 * an OAuth endpoint whose token server failed less than that before the recovery (plus its 5 s) may stay unserved.
 */
const TOKEN_HOLD_MS = 5_000 + 5_000;

function tokenHeld(o: Observation, endpoint: FuzzEndpoint): boolean {
  const auth = o.scenario.subscriptions[o.endpoints.indexOf(endpoint)]?.auth;
  return tokenFailedLately(auth, o.tokenFailedAt, o.answeredAt);
}

/** Did the token server of an endpoint with `auth` fail recently enough, at `answeredAt`, to leave it unserved? */
export function tokenFailedLately(auth: string | undefined, failedAt: number | undefined, answeredAt: number): boolean {
  return auth === 'oauth' && failedAt !== undefined && answeredAt - failedAt < TOKEN_HOLD_MS;
}

/**
 * The process was starved long enough to cut an attempt before its request was written or read: on an open connection a
 * request needs two turns of this one event loop (undici's write, the endpoint's read), so a stall that made both miss
 * DELIVERY_TIMEOUT_MS held one up at least half of it. A pool that never writes shows no such delay.
 */
export function starved(o: Observation): boolean {
  return (o.loopDelayMaxMs ?? 0) >= o.scenario.deliveryTimeoutMs / 2;
}

/**
 * I4: one half-open period after the endpoints healed, each is seen answering again (see `recovered`). If every
 * request sent to one ended on the product's own DELIVERY_TIMEOUT_MS while the process was starved (`starved`), the
 * harness runs another recovery invocation, up to MAX_RECOVERIES; anything else fails at once.
 */
function checkRecovery(o: Observation, fail: (invariant: string, detail: string) => void): void {
  for (const endpoint of o.endpoints) {
    if (recovered(o, endpoint)) continue;
    const sent = o.attempts.get(endpoint.name) ?? [];
    const seen =
      `ended: ${sent.join(', ')}; undici wrote ${o.written.get(endpoint.name) ?? 0} request(s) to it; ` +
      `event loop held up ${Math.round(o.loopDelayMaxMs ?? 0)} ms at most, DELIVERY_TIMEOUT_MS ${o.scenario.deliveryTimeoutMs} ms`;
    if (sent.length === 0) {
      fail('I4', `${endpoint.name} answers 2xx again but was sent no request one half-open period later`);
    } else if (sent.some((ended) => ended !== 'TIMEOUT')) {
      fail('I4', `${endpoint.name} answers 2xx again but no request sent to it in this recovery got a 2xx (${seen})`);
    } else if (!starved(o)) {
      fail(
        'I4',
        `${endpoint.name} answers 2xx again but every request sent to it timed out, and the process was not starved ` +
          `(${seen}): a request held in the pool or the lane`,
      );
    } else if (o.lastRecovery) {
      fail(
        'I4',
        `${endpoint.name} answers 2xx again but no request sent to it got a 2xx in any recovery invocation: each ` +
          `ended on DELIVERY_TIMEOUT_MS in a starved process (${seen})`,
      );
    }
  }
}

/** I3: per group and endpoint, acceptances in sequence order; no later message acknowledged while an earlier one is not. */
function checkFifo(
  o: Observation,
  failed: Set<string>,
  confirmed: Map<string, number>,
  fail: (invariant: string, detail: string) => void,
): void {
  const groups = new Map<string, ModelRecord[]>();
  for (const item of o.batch) {
    const group = item.record.attributes.MessageGroupId!;
    groups.set(group, [...(groups.get(group) ?? []), item]);
  }
  // An event shared by messages of two groups is delivered once for both: its order belongs to neither.
  const groupsOfKey = new Map<string, Set<string>>();
  for (const [group, items] of groups) {
    for (const item of items) groupsOfKey.set(item.key, (groupsOfKey.get(item.key) ?? new Set()).add(group));
  }
  for (const [group, items] of groups) {
    const firstFailed = items.findIndex((item) => failed.has(item.record.messageId));
    if (firstFailed >= 0) {
      const later = items.slice(firstFailed + 1).find((item) => !failed.has(item.record.messageId));
      if (later) {
        fail(
          'I3',
          `group ${group}: ${later.record.messageId} was acknowledged while the earlier ` +
            `${items[firstFailed]!.record.messageId} (${items[firstFailed]!.spec.kind}) was reported failed`,
        );
      }
    }
    // No later record reaches an endpoint before each earlier one is delivered everywhere or confirmed in quarantine.
    for (const endpoint of o.endpoints) {
      items.forEach((later, j) => {
        if (groupsOfKey.get(later.key)!.size > 1 || !endpoint.acceptedNow.has(later.key)) return;
        // A second message with the same event shares the first one's delivery.
        if (items.slice(0, j).some((item) => item.key === later.key)) return;
        const at = endpoint.acceptedNow.get(later.key)!;
        for (const earlier of items.slice(0, j)) {
          if (earlier.key === later.key) continue;
          const settled = settledBefore(o, earlier, confirmed, at);
          if (!settled.ok) {
            fail(
              'I3',
              `group ${group}: ${endpoint.name} took ${later.record.messageId} while the earlier ` +
                `${earlier.record.messageId} (${earlier.spec.kind}) was ${settled.why}`,
            );
          }
        }
      });
    }
  }
}

/** Was `earlier` delivered everywhere (or skipped by the ledger) or confirmed in quarantine before logical time `at`? */
function settledBefore(
  o: Observation,
  earlier: ModelRecord,
  confirmed: Map<string, number>,
  at: number,
): { ok: true } | { ok: false; why: string } {
  const quarantinedAt = confirmed.get(earlier.record.messageId);
  if (quarantinedAt !== undefined) {
    return quarantinedAt < at ? { ok: true } : { ok: false, why: 'confirmed in quarantine only later' };
  }
  if (earlier.poison) return { ok: false, why: 'not confirmed in quarantine' };
  for (const endpoint of o.endpoints) {
    if (!earlier.routed.has(endpoint.name)) continue;
    const acceptedAt = endpoint.acceptedAt.get(earlier.key);
    const skipped = o.ledgerBefore?.get(earlier.key)?.has(endpoint.name);
    if (!skipped && (acceptedAt === undefined || acceptedAt > at)) {
      return { ok: false, why: `not yet delivered to ${endpoint.name}` };
    }
  }
  return { ok: true };
}

function lineWith(output: string, mark: string): string {
  return output
    .split('\n')
    .find((line) => line.includes(mark))!
    .slice(0, 400);
}
