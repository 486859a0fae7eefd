import type { SQSRecord } from 'aws-lambda';
import type { DeliveryResult } from '../delivery';
import { type InvalidEvent, parseEvent, type ValidEvent } from '../event';
import { laneEndpointOf } from '../lanes/envelope';
import { REDRIVE_MARKER } from '../redrive/marker';
import { QUARANTINE_ATTRIBUTES } from '../settle/quarantine';
import type { DeliveryFailure, RecordOutcome } from '../types';
import type { FanoutResult } from './fanout';

/** The outcomes of a poison record: it can never succeed as it is. */
export type PoisonOutcome = Extract<RecordOutcome, { kind: 'invalid' | 'rejected' }>;

export interface BatchOptions {
  maxEventBytes: number;
  /** Ask the ledger about every record, not only the ones SQS delivers again (DELIVERY_LEDGER_MODE=every-delivery). */
  lookupFirstReceives?: boolean;
  /**
   * FIFO: quarantines a poison record before the rest of its group may go, resolving whether it is confirmed in the
   * quarantine queue (only then does the group go on; otherwise it is blocked). Without it, poison blocks its group.
   * Must not throw.
   */
  quarantineInOrder?(record: SQSRecord, outcome: PoisonOutcome): Promise<boolean>;
  /**
   * Which endpoints already have each event (the delivery ledger). `events` holds every record to look up, so a key
   * may come more than once (records of one event routed differently). Must not throw.
   */
  lookup?(keys: string[], events: readonly ValidEvent[]): Promise<ReadonlyMap<string, ReadonlySet<string>>>;
  /** The endpoints an event is routed to: records of one event share a delivery only when routed alike. */
  routedTo?(event: ValidEvent): readonly string[];
  /** Delivers one event to the endpoints that do not have it yet. Must not throw. */
  deliver(event: ValidEvent, already: ReadonlySet<string> | undefined): Promise<Delivered>;
}

/** What the outcome of a record depends on: an endpoint the event is not routed to is in neither list. */
export type Delivered = Pick<FanoutResult, 'results' | 'skipped'>;

export interface ProcessedRecord {
  record: SQSRecord;
  event: ValidEvent | InvalidEvent;
  outcome: RecordOutcome;
  /** FIFO poison only: whether quarantineInOrder confirmed it in the quarantine queue (it is not sent again). */
  quarantined?: boolean;
}

/** Reduces the per-endpoint results of one event to the record's outcome. */
export function outcomeOf(fan: Delivered): RecordOutcome {
  const delivered: string[] = [];
  const failures: DeliveryFailure[] = [];
  for (const result of fan.results) {
    if (result.ok) delivered.push(result.endpoint);
    else failures.push(stripOk(result));
  }
  if (failures.length === 0) return { kind: 'delivered', delivered, skipped: fan.skipped };
  // The event comes back: settle writes the skipped endpoints' ledger entries again, so they last as long as it does.
  const skipped = fan.skipped.length > 0 ? { skipped: fan.skipped } : {};
  if (failures.some((failure) => failure.kind === 'rejected'))
    return { kind: 'rejected', failures, delivered, ...skipped };
  const retryAfters = failures.map((failure) => failure.retryAfterS ?? 0);
  const retryAfterS = Math.max(...retryAfters);
  return retryAfterS > 0
    ? { kind: 'failed', failures, delivered, ...skipped, retryAfterS }
    : { kind: 'failed', failures, delivered, ...skipped };
}

function stripOk(result: Extract<DeliveryResult, { ok: false }>): DeliveryFailure {
  const { ok: _ok, ...failure } = result;
  return failure;
}

const isPoison = (outcome: RecordOutcome): outcome is PoisonOutcome =>
  outcome.kind === 'invalid' || outcome.kind === 'rejected';

/**
 * The record may have reached endpoints before: SQS handed it out already, or it came back through a redrive (a new
 * message carrying the redrive marker or our quarantine attributes). A missing count counts as a redelivery.
 */
export function isRedelivery(record: SQSRecord): boolean {
  const count = Number(record.attributes?.ApproximateReceiveCount);
  return !(count <= 1) || cameThroughRedrive(record);
}

/** A new message that a redrive moved back: it carries the redrive marker or our quarantine attributes. */
export function cameThroughRedrive(record: SQSRecord): boolean {
  for (const name in record.messageAttributes) {
    if (name === REDRIVE_MARKER) return true;
    if (name === QUARANTINE_ATTRIBUTES.combined || name.startsWith(`${QUARANTINE_ATTRIBUTES.combined}.`)) return true;
  }
  return false;
}

/**
 * A lane's copy a redrive moved to the source queue: it is owed to its lane's endpoint alone, and skips every other
 * routed endpoint without asking the ledger (those endpoints' own copies went elsewhere, e.g. to the quarantine).
 */
export function isRedrivenLaneCopy(record: SQSRecord): boolean {
  return laneEndpointOf(record) !== undefined && cameThroughRedrive(record);
}

function without(set: ReadonlySet<string> | undefined, name: string): ReadonlySet<string> | undefined {
  if (!set?.has(name)) return set;
  const copy = new Set(set);
  copy.delete(name);
  return copy;
}

/**
 * The endpoints to skip for a record: the ledger's, less the endpoint of a lane's copy; for a copy a redrive moved
 * here (its marker: producers may set `ingest.lane` themselves) every routed endpoint but that one, which the source
 * record already served, ledger entry or not.
 */
function skipFor(
  event: ValidEvent,
  known: ReadonlySet<string> | undefined,
  record: SQSRecord,
  routedTo: BatchOptions['routedTo'],
): ReadonlySet<string> | undefined {
  const lane = laneEndpointOf(record);
  if (lane === undefined) return known;
  if (!routedTo || !isRedrivenLaneCopy(record)) return without(known, lane);
  return new Set(routedTo(event).filter((name) => name !== lane));
}

const keysOf = (events: readonly ValidEvent[]) => [...new Set(events.map((event) => event.key))];

/**
 * Parses and delivers every record. Records without a MessageGroupId all run at once; within a FIFO group records run
 * in order and, after the first failure, the rest of the group is sent nowhere. The same event (source + id) twice in a
 * batch (twice in one FIFO group) and routed to the same endpoints is delivered once and both records share the outcome.
 */
export async function processBatch(records: readonly SQSRecord[], options: BatchOptions): Promise<ProcessedRecord[]> {
  const inFlight = new Map<string, Promise<RecordOutcome>>();
  const parsed = records.map((record) => parseEvent(record.body, options.maxEventBytes));
  const keys = new Set<string>();
  const repeated = new Set<string>();
  const looked: ValidEvent[] = [];
  parsed.forEach((event, index) => {
    if (!event.ok) return;
    if (keys.has(event.key)) repeated.add(event.key);
    else keys.add(event.key);
    if (options.lookupFirstReceives || isRedelivery(records[index]!)) looked.push(event);
  });
  const known = options.lookup && looked.length > 0 ? await options.lookup(keysOf(looked), looked) : undefined;

  // FIFO: shared only within a group; another group's copy may go out before this group's predecessor is delivered.
  const run = (index: number, groupId?: string): Promise<RecordOutcome> => {
    const event = parsed[index]!;
    if (!event.ok) return Promise.resolve({ kind: 'invalid', reason: event.reason, detail: event.detail });
    // Routing is asked only for an event seen twice: a record whose filters pick other endpoints gets its own delivery.
    const routing =
      repeated.has(event.key) && options.routedTo ? `\u0000${options.routedTo(event).join('\u0000')}` : '';
    // A lane's copy: its endpoint is in the ledger (as parked), yet never received it.
    const notReached = laneEndpointOf(records[index]!);
    const lane = notReached === undefined ? '' : `\u0000lane:${notReached}`;
    const dedupKey = (groupId === undefined ? '' : `${groupId}\u0000`) + event.key + routing + lane;
    let shared = inFlight.get(dedupKey);
    if (!shared) {
      shared = options
        .deliver(event, skipFor(event, known?.get(event.key), records[index]!, options.routedTo))
        .then(outcomeOf);
      inFlight.set(dedupKey, shared);
    }
    return shared;
  };

  const outcomes: Promise<RecordOutcome>[] = new Array(records.length);
  const groups = new Map<string, number[]>();
  records.forEach((record, index) => {
    const groupId = record.attributes?.MessageGroupId;
    if (groupId === undefined) {
      outcomes[index] = run(index);
      return;
    }
    const group = groups.get(groupId);
    if (group) group.push(index);
    else groups.set(groupId, [index]);
  });

  const quarantined = new Map<number, boolean>();
  // Does this outcome hold up the rest of its group? Poison only lets it go once confirmed in the quarantine queue.
  const blocks = async (index: number, outcome: RecordOutcome): Promise<boolean> => {
    if (outcome.kind === 'delivered') return false;
    if (!isPoison(outcome) || !options.quarantineInOrder) return true;
    const confirmed = await options.quarantineInOrder(records[index]!, outcome);
    quarantined.set(index, confirmed);
    return !confirmed;
  };

  for (const [groupId, indexes] of groups) {
    // Each record of a group waits for its predecessor's verdict; a failure blocks the rest of the group.
    let previous: Promise<boolean> = Promise.resolve(false);
    for (const index of indexes) {
      const outcome = previous.then((blocked) =>
        blocked ? ({ kind: 'blocked', groupId } as const satisfies RecordOutcome) : run(index, groupId),
      );
      const verdict = outcome.then((result) => blocks(index, result));
      // The record is done once its verdict is: a FIFO quarantine has been tried.
      outcomes[index] = verdict.then(() => outcome);
      previous = verdict;
    }
  }

  const settled = await Promise.all(outcomes);
  return records.map((record, index) => {
    const processed: ProcessedRecord = { record, event: parsed[index]!, outcome: settled[index]! };
    const confirmed = quarantined.get(index);
    if (confirmed !== undefined) processed.quarantined = confirmed;
    return processed;
  });
}
