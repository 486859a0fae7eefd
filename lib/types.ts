import type { SQSRecord } from 'aws-lambda';

/** Why one delivery to one endpoint did not succeed. */
export type FailureKind =
  /** 408, 429, 5xx, connection error or timeout: may succeed later. */
  | 'transient'
  /** 400, 413, 415, 422, or 431 in binary mode (HTTP_4XX): the endpoint blames the event; it is quarantined. */
  | 'rejected'
  /** 401 or 403, still after one refresh of the endpoint's credential: our credentials are refused. */
  | 'unauthorized'
  /** Another 4xx (404, 405, 409, 410...): the endpoint's URL or state is wrong, not the event; backed off. */
  | 'endpoint-error'
  /** A 3xx: not followed; the endpoint's URL is probably wrong. */
  | 'redirect'
  /** The invocation's deadline fired before the delivery finished. */
  | 'aborted'
  /** The endpoint's circuit breaker is open after repeated transient failures. */
  | 'circuit-open'
  /** An operator paused the endpoint (`npm run endpoint -- pause`): no request is sent; its events park in its lane. */
  | 'paused';

export interface DeliveryFailure {
  endpoint: string;
  kind: FailureKind;
  /** HTTP status of the last attempt, when there was a response. */
  status?: number;
  /** Error code or message of the last attempt, when there was no response. */
  error?: string;
  attempts: number;
  /** The endpoint's Retry-After, in seconds, when it sent one. */
  retryAfterS?: number;
}

/** What happened to one record of the batch. */
export type RecordOutcome =
  /** Every endpoint has the event (now, or earlier according to the ledger) or holds it in its lane (`parked`). */
  | { kind: 'delivered'; delivered: string[]; skipped: string[]; parked?: string[] }
  /** The record is not a deliverable CloudEvent; it was sent nowhere. */
  | { kind: 'invalid'; reason: InvalidReason; detail: string }
  /** At least one endpoint blamed the event itself (400, 413, 415, 422; 431 in binary mode): it is quarantined. */
  | { kind: 'rejected'; failures: DeliveryFailure[]; delivered: string[]; skipped?: string[] }
  /** Not delivered everywhere yet; worth another attempt later. `skipped`: endpoints the ledger says have it. */
  | {
      kind: 'failed';
      failures: DeliveryFailure[];
      delivered: string[];
      skipped?: string[];
      retryAfterS?: number;
      parked?: string[];
    }
  /** FIFO: an earlier record of the same message group failed, so this one was sent nowhere. */
  | { kind: 'blocked'; groupId: string };

export type InvalidReason = 'empty-body' | 'too-large' | 'not-json' | 'not-object' | 'invalid-cloudevent';

/** A record bound for the quarantine queue, with the reason it can never succeed. */
export interface QuarantineItem {
  record: SQSRecord;
  /** `retries-exhausted` and `lane-envelope-invalid` come from an endpoint's lane (lib/lanes), which `endpoint` names. */
  reason: InvalidReason | 'rejected-by-endpoint' | 'retries-exhausted' | 'lane-envelope-invalid';
  detail: string;
  endpoint?: string;
  status?: number;
}

/** Side effect: moves poison records out of the flow. Resolves with the message ids that are safely quarantined. */
export interface Quarantine {
  send(items: QuarantineItem[], signal: AbortSignal): Promise<Set<string>>;
}

export interface BackoffItem {
  record: SQSRecord;
  /** The longest Retry-After an endpoint asked for, in seconds. */
  retryAfterS?: number;
}

/** Side effect: delays the next delivery of records reported failed. May throw; the caller logs and counts it. */
export interface Backoff {
  apply(items: BackoffItem[], signal: AbortSignal): Promise<void>;
}

export interface LedgerEntry {
  /** The event's idempotency key (see `idempotencyKey` in lib/event/event.ts). */
  key: string;
  endpoint: string;
}

/** Side effect: remembers which endpoints took which event. May throw; the caller logs, counts and delivers anyway. */
export interface Ledger {
  /** For each key, the endpoints that already took the event. Keys with no entry may be absent from the map. */
  /** `endpointsOf` limits the question to the endpoints each event is routed to (all endpoints without it). */
  lookup(
    keys: string[],
    signal: AbortSignal,
    endpointsOf?: (key: string) => readonly string[],
  ): Promise<Map<string, Set<string>>>;
  record(entries: LedgerEntry[], signal: AbortSignal): Promise<void>;
}
