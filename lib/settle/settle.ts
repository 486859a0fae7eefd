import type { Logger } from '@aws-lambda-powertools/logger';
import type { SQSRecord } from 'aws-lambda';
import { cameThroughRedrive, isRedrivenLaneCopy, type PoisonOutcome, type ProcessedRecord } from '../batch/batch';
import type { Config } from '../config/config';
import { errorText } from '../errors';
import type {
  Backoff,
  BackoffItem,
  DeliveryFailure,
  Ledger,
  LedgerEntry,
  Quarantine,
  QuarantineItem,
  RecordOutcome,
} from '../types';

/** What settling a batch acts on: the side effects (each optional), the logger and DELIVERY_LEDGER_MODE. */
export interface SettleDeps {
  logger: Logger;
  ledgerMode: Config['ledgerMode'];
  quarantine?: Quarantine | undefined;
  backoff?: Backoff | undefined;
  ledger?: Ledger | undefined;
}

/** Side effects that failed during one batch, for its metrics. */
export interface SettleCounters {
  ledgerErrors: number;
  quarantineErrors: number;
  backoffErrors: number;
}

/** Runs the side effects the outcomes call for; resolves with the message ids to report failed, in batch order. */
export type Settle = (
  processed: ProcessedRecord[],
  signal: AbortSignal,
  counters: SettleCounters,
) => Promise<Set<string>>;

/** SQS message ids per grouped line (cut off by the deadline, refused by an open breaker). */
export const GROUPED_IDS_PER_LINE = 50;
const GROUPED_MESSAGES = {
  aborted: 'deliveries cut off by the deadline',
  'circuit-open': "deliveries not attempted: the endpoint's circuit breaker is open",
  paused: 'deliveries not attempted: the endpoint is paused and its lane could not take them',
} as const;
type GroupedKind = keyof typeof GROUPED_MESSAGES;

const CHECK_CREDENTIAL =
  "check the endpoint's entry in ENDPOINT_CREDENTIALS (or its auth/signing in the endpoints file) and the value stored " +
  'for it; the record comes back with backoff';

/** What a 401/403 log line tells on-call, by what happened to the credential (the failure's error code). */
function credentialsHint(error: string | undefined): string {
  if (error === 'CREDENTIALS_NONE') {
    return (
      'credentials were refused (401/403) and the endpoint has none: add its entry to ENDPOINT_CREDENTIALS, or auth ' +
      'to its entry in the endpoints file'
    );
  }
  if (error === 'CREDENTIALS_NOT_REFRESHED')
    return `credentials were refused (401/403); read again less than 30 s ago, the store holds the refused value: ${CHECK_CREDENTIAL}`;
  // Found before sending (lib/subscription/request.ts): nothing was refused, the stored value itself is unusable.
  if (error?.startsWith('INVALID_HEADER_VALUE')) {
    return (
      'a stored secret holds a character HTTP cannot carry (a line break? see error for the header); nothing was sent: ' +
      "fix the value stored for the endpoint's auth/signing in the endpoints file or its ENDPOINT_CREDENTIALS entry; " +
      'the record comes back with backoff'
    );
  }
  if (error?.startsWith('SIGNING_SECRET_INVALID')) {
    return (
      "the stored Standard Webhooks secret named in error is not 'whsec_' + base64 of 24 to 64 random bytes; nothing " +
      'was sent: store a valid secret under that name (or remove it from signing.secrets); the record comes back with backoff'
    );
  }
  // lib/subscription/request.ts's OAUTH_TOKEN_REFUSED: the token endpoint's 400/401, not the endpoint's.
  if (error?.startsWith('OAUTH_TOKEN_REFUSED')) {
    return (
      'the OAuth token endpoint refused the client (its status and error code are in error; nothing was sent to the ' +
      "endpoint): check the endpoint's auth.clientId, auth.scope, the client secret stored for auth.clientSecret and " +
      'auth.clientAuth (a token endpoint that takes the secret only in the form refuses HTTP Basic: set post); ' +
      'the record comes back with backoff'
    );
  }
  if (error?.startsWith('CREDENTIALS_REFRESH_FAILED'))
    return `credentials were refused (401/403) and reading them again failed (see error): ${CHECK_CREDENTIAL}`;
  return `credentials were refused (401/403) even after reading them again: ${CHECK_CREDENTIAL}`;
}

/** Delivered nowhere and skipped nowhere: the event matched no endpoint's filter. */
export function isUnrouted(outcome: RecordOutcome): boolean {
  return (
    outcome.kind === 'delivered' &&
    outcome.delivered.length === 0 &&
    outcome.skipped.length === 0 &&
    !outcome.parked?.length
  );
}

/** What the quarantine queue is told about a poison record. */
function poisonItem(record: SQSRecord, outcome: PoisonOutcome): QuarantineItem {
  if (outcome.kind === 'invalid') return { record, reason: outcome.reason, detail: outcome.detail };
  const rejection = outcome.failures.find((failure) => failure.kind === 'rejected')!;
  return {
    record,
    reason: 'rejected-by-endpoint',
    detail: `${rejection.endpoint} answered ${rejection.status}`,
    endpoint: rejection.endpoint,
    ...(rejection.status !== undefined ? { status: rejection.status } : {}),
  };
}

function logQuarantined(log: () => Logger, item: QuarantineItem): void {
  log().info('record quarantined', {
    reason: item.reason,
    ...(item.endpoint ? { endpoint: item.endpoint, status: item.status } : {}),
  });
}

function logNotQuarantined(log: () => Logger, item: QuarantineItem): void {
  log().warn('record not quarantined; reported failed, it comes back later', { reason: item.reason });
}

/** FIFO: a poison record goes to the quarantine before the rest of its group may go. Never throws. */
export function quarantineInOrder(logger: Logger, target: Quarantine, signal: AbortSignal) {
  return async (record: SQSRecord, outcome: PoisonOutcome): Promise<boolean> => {
    try {
      return (await target.send([poisonItem(record, outcome)], signal)).has(record.messageId);
    } catch (error) {
      logger.error('quarantine failed; the record and the rest of its FIFO group stay on the queue', {
        error: errorText(error),
        messageId: record.messageId,
      });
      return false;
    }
  };
}

/** Each record's own child logger, created only when the record has something to log. */
function recordLogger(logger: Logger, record: SQSRecord, event: ProcessedRecord['event']): () => Logger {
  let child: Logger | undefined;
  return () => {
    child ??= logger.createChild({
      persistentKeys: {
        messageId: record.messageId,
        ...(event.ok ? { eventId: event.id, eventSource: event.source, eventType: event.type } : {}),
      },
    });
    return child;
  };
}

/** What the outcomes of one batch call for, gathered before any side effect starts. */
interface Plan {
  /** Records to report failed (and back off), by message id. */
  failed: Map<string, BackoffItem>;
  /** Poison not yet quarantined (FIFO poison went already, through quarantineInOrder). */
  poison: QuarantineItem[];
  loggers: Map<string, () => Logger>;
  /** Log lines, written while the side effects wait on the network so they never delay the answer. */
  later: Array<() => void>;
  /** Deliveries the deadline cut off or an open breaker refused: one line per endpoint, not per record. */
  grouped: Record<GroupedKind, Map<string, string[]>>;
  entries: LedgerEntry[];
}

function logFailures(
  plan: Plan,
  log: () => Logger,
  failures: DeliveryFailure[],
  delivered: string[],
  messageId: string,
) {
  // The endpoints the event is routed to (besides those the ledger says have it): "where is event X" shows them.
  // One comma-joined field: Logs Insights would split an array into routedTo.0, routedTo.1, ...
  const routedTo = [...delivered, ...failures.map((failure) => failure.endpoint)].join(',');
  for (const failure of failures) {
    if (failure.kind === 'aborted' || failure.kind === 'circuit-open' || failure.kind === 'paused') {
      const byEndpoint = plan.grouped[failure.kind];
      const ids = byEndpoint.get(failure.endpoint);
      if (ids) ids.push(messageId);
      else byEndpoint.set(failure.endpoint, [messageId]);
    } else if (failure.kind === 'unauthorized') {
      plan.later.push(() =>
        log().warn('delivery failed', { ...failure, routedTo, hint: credentialsHint(failure.error) }),
      );
    } else plan.later.push(() => log().warn('delivery failed', { ...failure, routedTo }));
  }
}

/** Sorts one record's outcome into the plan: its log lines, and whether it is poison or reported failed. */
function planOutcome(plan: Plan, item: ProcessedRecord, log: () => Logger, counters: SettleCounters): void {
  const { record, outcome, quarantined } = item;
  switch (outcome.kind) {
    case 'delivered':
      break;
    case 'invalid':
    case 'rejected':
      if (outcome.kind === 'invalid') {
        plan.later.push(() => log().warn('invalid record', { reason: outcome.reason, detail: outcome.detail }));
      } else logFailures(plan, log, outcome.failures, outcome.delivered, record.messageId);
      if (quarantined === undefined) plan.poison.push(poisonItem(record, outcome));
      else if (quarantined) plan.later.push(() => logQuarantined(log, poisonItem(record, outcome)));
      else {
        counters.quarantineErrors++;
        plan.later.push(() => logNotQuarantined(log, poisonItem(record, outcome)));
        plan.failed.set(record.messageId, { record });
      }
      break;
    case 'failed':
      logFailures(plan, log, outcome.failures, outcome.delivered, record.messageId);
      plan.failed.set(record.messageId, {
        record,
        ...(outcome.retryAfterS !== undefined ? { retryAfterS: outcome.retryAfterS } : {}),
      });
      break;
    case 'blocked':
      plan.later.push(() =>
        log().warn('record not sent: an earlier record of its FIFO group failed', { groupId: outcome.groupId }),
      );
      plan.failed.set(record.messageId, { record });
      break;
  }
}

/**
 * The endpoints a record's ledger entries are written for: those it reached now, and, for a record a redrive moved
 * back (or, in every-delivery mode, any new message), those the ledger let it skip: their entries then last another
 * TTL, as the new message does. Within one message's life the first write's TTL already outlasts it, so skipped
 * endpoints are not written again on every receive.
 */
function ledgerEndpoints(record: SQSRecord, outcome: ProcessedRecord['outcome'], mode: Config['ledgerMode']): string[] {
  if (!('delivered' in outcome)) return [];
  // A parked endpoint is written like a delivered one: a redelivery for another endpoint does not park it twice.
  const reached = 'parked' in outcome ? [...outcome.delivered, ...(outcome.parked ?? [])] : outcome.delivered;
  // Its skips are not the ledger's: writing them would make the skipped endpoints' own copies skip them too.
  if (isRedrivenLaneCopy(record)) return reached;
  // every-delivery: a skip may come from a producer's duplicate, a new message with a life of its own.
  const newLife = mode === 'every-delivery' || cameThroughRedrive(record);
  return newLife ? [...reached, ...(outcome.skipped ?? [])] : reached;
}

function planBatch(deps: SettleDeps, processed: ProcessedRecord[], counters: SettleCounters): Plan {
  const plan: Plan = {
    failed: new Map(),
    poison: [],
    loggers: new Map(),
    later: [],
    grouped: { aborted: new Map(), 'circuit-open': new Map(), paused: new Map() },
    entries: [],
  };
  // Per event and endpoint: copies of one event routed differently each write the endpoints they reached.
  const recorded = new Set<string>();
  for (const item of processed) {
    const { record, event, outcome } = item;
    const log = recordLogger(deps.logger, record, event);
    plan.loggers.set(record.messageId, log);
    // In the default mode only what comes back needs the ledger: events not yet delivered everywhere.
    const comesBack = outcome.kind !== 'delivered' || deps.ledgerMode === 'every-delivery';
    if (event.ok && comesBack) {
      for (const endpoint of ledgerEndpoints(record, outcome, deps.ledgerMode)) {
        const id = `${event.key}\u0000${endpoint}`;
        if (recorded.has(id)) continue;
        recorded.add(id);
        plan.entries.push({ key: event.key, endpoint });
      }
    }
    planOutcome(plan, item, log, counters);
  }
  return plan;
}

async function writeLedger(deps: SettleDeps, plan: Plan, signal: AbortSignal, counters: SettleCounters) {
  const { ledger, logger } = deps;
  if (!ledger || plan.entries.length === 0) return;
  try {
    await ledger.record(plan.entries, signal);
  } catch (error) {
    counters.ledgerErrors++;
    logger.warn('delivery ledger not updated; a redelivery will reach these endpoints again', {
      error: errorText(error),
      entries: plan.entries.length,
    });
  }
}

/** Poison the quarantine did not confirm joins the failed records (logged as such when there is a quarantine). */
function sortPoison(deps: SettleDeps, plan: Plan, safe: Set<string>, counters: SettleCounters): void {
  for (const item of plan.poison) {
    const log = plan.loggers.get(item.record.messageId)!;
    if (safe.has(item.record.messageId)) logQuarantined(log, item);
    else {
      if (deps.quarantine) {
        counters.quarantineErrors++;
        logNotQuarantined(log, item);
      }
      plan.failed.set(item.record.messageId, { record: item.record });
    }
  }
}

// The awaits stay in this one function: with no poison or no quarantine, the backoff starts before any log line.
async function quarantineAndBackoff(deps: SettleDeps, plan: Plan, signal: AbortSignal, counters: SettleCounters) {
  const { quarantine, backoff, logger } = deps;
  if (plan.poison.length > 0) {
    let safe = new Set<string>();
    if (quarantine) {
      try {
        safe = await quarantine.send(plan.poison, signal);
      } catch (error) {
        logger.error('quarantine failed; the records stay on the queue', { error: errorText(error) });
      }
    }
    sortPoison(deps, plan, safe, counters);
  }
  if (backoff && plan.failed.size > 0) {
    try {
      await backoff.apply([...plan.failed.values()], signal);
    } catch (error) {
      counters.backoffErrors++;
      logger.warn('visibility backoff failed; the records come back after the queue visibility timeout', {
        error: errorText(error),
      });
    }
  }
}

function logGrouped(logger: Logger, grouped: Plan['grouped']): void {
  for (const [kind, byEndpoint] of Object.entries(grouped)) {
    for (const [endpoint, ids] of byEndpoint) {
      // Every id, so the event history finds each record; chunks keep a line far below CloudWatch's 256 KB.
      for (let i = 0; i < ids.length; i += GROUPED_IDS_PER_LINE) {
        logger.warn(GROUPED_MESSAGES[kind as GroupedKind], {
          endpoint,
          kind,
          records: ids.length,
          // One comma-joined field: Logs Insights would split an array into messageIds.0, messageIds.1, ...
          messageIds: ids.slice(i, i + GROUPED_IDS_PER_LINE).join(','),
        });
      }
    }
  }
}

/** Events that match no endpoint's filter: acknowledged, and one line per batch says which kinds they were. */
function logUnrouted(logger: Logger, processed: ProcessedRecord[]): void {
  const kinds = new Map<string, { type: string; source: string; records: number }>();
  const eventIds: string[] = [];
  for (const { event, outcome } of processed) {
    if (!event.ok || !isUnrouted(outcome)) continue;
    if (eventIds.length < 20) eventIds.push(event.id);
    const id = JSON.stringify([event.type, event.source]);
    const kind = kinds.get(id);
    if (kind) kind.records++;
    else kinds.set(id, { type: event.type, source: event.source, records: 1 });
  }
  if (kinds.size === 0) return;
  logger.info('records routed to no endpoint; acknowledged', {
    records: [...kinds.values()].reduce((sum, kind) => sum + kind.records, 0),
    kinds: [...kinds.values()].slice(0, 20),
    eventIds,
  });
}

/**
 * Settles a batch's outcomes: the ledger records what comes back, poison goes to the quarantine, failed records are
 * backed off; one log line per failure, written while those wait on the network.
 */
export function createSettle(deps: SettleDeps): Settle {
  return async (processed, signal, counters) => {
    const plan = planBatch(deps, processed, counters);
    const effects = Promise.all([
      writeLedger(deps, plan, signal, counters),
      quarantineAndBackoff(deps, plan, signal, counters),
    ]);
    for (const line of plan.later) line();
    logGrouped(deps.logger, plan.grouped);
    logUnrouted(deps.logger, processed);
    await effects;
    return new Set(processed.map((item) => item.record.messageId).filter((id) => plan.failed.has(id)));
  };
}
