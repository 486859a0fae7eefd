import type { SQSRecord } from 'aws-lambda';
import fc from 'fast-check';
import type { Mode, Reply } from './endpoint';
import type { Fault, Faults } from './sides';
import {
  type EventShape,
  eventShapeArb,
  type SubscriptionSpec,
  subscriptionArb,
  type TokenMode,
  tokenModeArb,
} from './subscriptions';

/** What one generated SQS record holds. Poison kinds are the ones no endpoint should ever see. */
export type RecordKind =
  | 'valid'
  | 'null-attributes'
  | 'not-json'
  | 'invalid-cloudevent'
  | 'bad-extension'
  | 'at-limit'
  | 'over-limit';

export const POISON_KINDS: ReadonlySet<RecordKind> = new Set([
  'not-json',
  'invalid-cloudevent',
  'bad-extension',
  'over-limit',
]);

export interface RecordSpec {
  kind: RecordKind;
  /** Index into a small pool of event ids: the same id in several messages is a duplicate of one event. */
  eventId: number;
  /** FIFO message group (ignored on a standard queue). */
  group: number;
}

/** Text that stands for payload bytes and credentials: it must never appear in a log line (I5). */
export const PAYLOAD_MARK = 'pAyLoAd-s3cr3t-body';
export const CREDENTIAL_MARK = 'cReD-t0ken-never-logged';
export const SOURCE = 'urn:fuzz';

/** A record of the batch with what the model knows about it. */
export interface ModelRecord {
  record: SQSRecord;
  spec: RecordSpec;
  key: string;
  poison: boolean;
  /** The endpoints whose filter takes the event, by the model's reading of the endpoints file. */
  routed: ReadonlySet<string>;
}

export interface InvocationSpec {
  /** Lambda's remaining time at the start of the invocation. */
  remainingMs: number;
  modes: Mode[];
  faults: Faults;
  /** The credential source: answers, throws (SSM throttled), or takes longer than the invocation has (SDK retries). */
  credentials: 'ok' | 'throw' | 'slow';
  /** How the OAuth token endpoint answers. */
  token: TokenMode;
  records: RecordSpec[];
  /** Lanes scenarios only: how the lanes and the pause flag behave during the invocation. */
  lane?: LaneInvocation;
}

/**
 * How sends to the lanes fail in one invocation: SQS errors, half the entries refused, a hang, or no such queue; or
 * 'stray': a copy of a parked message also lands in another endpoint's lane (a misdirected redrive).
 */
export type LaneFault = 'ok' | 'throw' | 'partial' | 'hang' | 'missing' | 'stray';

export interface LaneInvocation {
  fault: LaneFault;
  /** The endpoint whose lane queue does not exist ('missing'). */
  missing: number;
  /** Per endpoint: paused (IngestDeps.paused) during this invocation. */
  paused: boolean[];
}

/** What a lanes scenario adds (standard queue): LANE_QUEUE_URL_PREFIX, PARK_AFTER_S, each endpoint's retrySchedule. */
export interface LaneSpec {
  parkAfterS: number;
  /** Virtual seconds between two invocations: a redelivered record is this much older, a delay takes ⌈d / this⌉ of them. */
  intervalS: number;
  schedules: number[][];
}

export interface Scenario {
  endpoints: Reply[][];
  /** The endpoints file: one entry per endpoint. */
  subscriptions: SubscriptionSpec[];
  /** The attributes of event ids 0 to 7 (RecordSpec.eventId). */
  events: EventShape[];
  ledgerMode: 'redeliveries' | 'every-delivery';
  /** Standard queues: a record reported failed this often is dead-lettered; lib/redrive moves the DLQ back before invocation `before`. */
  redrive: { maxReceiveCount: number; before: number } | undefined;
  fifo: boolean;
  quarantine: boolean;
  ledger: boolean;
  backoff: boolean;
  credentials: boolean;
  deliveryTimeoutMs: number;
  maxAttempts: number;
  breakerThreshold: number;
  halfOpenMs: number;
  maxConnections: number;
  retryBaseDelayS: number;
  retryMaxDelayS: number;
  maxEventBytes: number;
  invocations: InvocationSpec[];
  lanes?: LaneSpec;
}

const retryAfter = fc.oneof(
  fc.record({ seconds: fc.constantFrom(0, 1, 2, 120, 86_400) }),
  fc.record({ dateAheadS: fc.constantFrom(1, 600, 10_800) }),
);

const status = fc.constantFrom(
  200,
  201,
  202,
  204,
  301,
  302,
  307,
  400,
  401,
  403,
  404,
  405,
  409,
  410,
  413,
  415,
  422,
  408,
  429,
  500,
  502,
  503,
  504,
);

export const replyArb: fc.Arbitrary<Reply> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('status' as const), status }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('status' as const),
      status: fc.constantFrom(429, 503, 500, 408),
      retryAfter,
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'reset-before' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut-body' as const), status: fc.constantFrom(200, 202) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('slow' as const),
      status: fc.constantFrom(200, 503),
      delayMs: fc.integer({ min: 5, max: 250 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'hang' as const }) },
);

const fault: fc.Arbitrary<Fault> = fc.oneof(
  { weight: 4, arbitrary: fc.constant('ok' as const) },
  { weight: 1, arbitrary: fc.constantFrom('throw' as const, 'partial' as const, 'hang' as const) },
);

const recordArb: fc.Arbitrary<RecordSpec> = fc.record({
  kind: fc.oneof(
    { weight: 8, arbitrary: fc.constant('valid' as const) },
    {
      weight: 1,
      arbitrary: fc.constantFrom<RecordKind>(
        'null-attributes',
        'not-json',
        'invalid-cloudevent',
        'bad-extension',
        'at-limit',
        'over-limit',
      ),
    },
  ),
  eventId: fc.integer({ min: 0, max: 7 }),
  group: fc.integer({ min: 0, max: 2 }),
});

export interface GenerationOptions {
  /** Triage only: credential sources always answer, to look past the known credential defect. */
  credentialFaults: boolean;
}

function invocationArb(endpointCount: number, options: GenerationOptions): fc.Arbitrary<InvocationSpec> {
  return fc.record({
    remainingMs: fc.integer({ min: 560, max: 1_600 }),
    modes: fc.array(
      fc.oneof(
        { weight: 4, arbitrary: fc.constant('script' as const) },
        { weight: 1, arbitrary: fc.constantFrom('down' as const, 'healthy' as const) },
      ),
      { minLength: endpointCount, maxLength: endpointCount },
    ),
    faults: fc.record({ quarantine: fault, backoff: fault, lookup: fault, record: fault }),
    credentials: options.credentialFaults
      ? fc.oneof(
          { weight: 6, arbitrary: fc.constant('ok' as const) },
          { weight: 1, arbitrary: fc.constantFrom('throw' as const, 'slow' as const) },
        )
      : fc.constant('ok' as const),
    token: tokenModeArb,
    records: fc.array(recordArb, { minLength: 1, maxLength: 6 }),
  });
}

export const scenarioArb = (options: GenerationOptions = { credentialFaults: true }): fc.Arbitrary<Scenario> =>
  fc.integer({ min: 1, max: 3 }).chain((count) =>
    fc.record({
      endpoints: fc.array(fc.array(replyArb, { minLength: 1, maxLength: 6 }), { minLength: count, maxLength: count }),
      subscriptions: fc.array(subscriptionArb, { minLength: count, maxLength: count }),
      events: fc.array(eventShapeArb, { minLength: 8, maxLength: 8 }),
      ledgerMode: fc.constantFrom('redeliveries' as const, 'every-delivery' as const),
      redrive: fc.option(
        fc.record({ maxReceiveCount: fc.constantFrom(1, 1, 2), before: fc.integer({ min: 1, max: 3 }) }),
        { nil: undefined, freq: 4 },
      ),
      fifo: fc.boolean(),
      quarantine: fc.boolean(),
      ledger: fc.boolean(),
      backoff: fc.boolean(),
      credentials: fc.boolean(),
      // Short timeouts end hangs as transient failures; long ones leave them to the deadline (an aborted attempt).
      deliveryTimeoutMs: fc.oneof(fc.integer({ min: 40, max: 300 }), fc.integer({ min: 1_000, max: 3_000 })),
      maxAttempts: fc.integer({ min: 1, max: 3 }),
      breakerThreshold: fc.integer({ min: 0, max: 4 }),
      halfOpenMs: fc.integer({ min: 10, max: 60 }),
      maxConnections: fc.integer({ min: 1, max: 4 }),
      retryBaseDelayS: fc.integer({ min: 0, max: 30 }),
      retryMaxDelayS: fc.integer({ min: 30, max: 900 }),
      maxEventBytes: fc.integer({ min: 600, max: 4_096 }),
      invocations: fc.array(invocationArb(count, options), { minLength: 1, maxLength: 3 }),
    }),
  );

const laneFault: fc.Arbitrary<LaneFault> = fc.oneof(
  { weight: 5, arbitrary: fc.constant('ok' as const) },
  { weight: 1, arbitrary: fc.constantFrom<LaneFault>('throw', 'partial', 'hang', 'missing', 'stray') },
);

/** A stretch of invocations [from, from + length) for one endpoint: down, or paused. */
const stretchArb = (endpoints: number, invocations: number) =>
  fc.option(
    fc.record({
      endpoint: fc.integer({ min: 0, max: endpoints - 1 }),
      from: fc.integer({ min: 0, max: invocations - 1 }),
      length: fc.integer({ min: 1, max: invocations }),
    }),
    { nil: undefined, freq: 3 },
  );

const within = (stretch: { endpoint: number; from: number; length: number } | undefined, i: number, at: number) =>
  stretch !== undefined && stretch.endpoint === i && at >= stretch.from && at < stretch.from + stretch.length;

/**
 * Lanes scenarios (issue 16): a standard queue with a quarantine, lanes on local SQS, a short PARK_AFTER_S and retry
 * schedule, 2 to 6 invocations with an endpoint down for a stretch then back, one paused for a stretch, and
 * lane sends that fail. The rest is scenarioArb's.
 */
export const laneScenarioArb = (options: GenerationOptions = { credentialFaults: true }): fc.Arbitrary<Scenario> =>
  scenarioArb(options).chain((base) => {
    const count = base.endpoints.length;
    return fc
      .record({
        lanes: fc.record({
          parkAfterS: fc.constantFrom(0, 0, 5, 20, 60),
          intervalS: fc.constantFrom(5, 10, 30),
          schedules: fc.array(fc.array(fc.constantFrom(1, 5, 30, 900, 3_600), { minLength: 1, maxLength: 3 }), {
            minLength: count,
            maxLength: count,
          }),
        }),
        extra: fc.array(invocationArb(count, options), { minLength: 1, maxLength: 3 }),
      })
      .chain(({ lanes, extra }) => {
        const invocations = [...base.invocations, ...extra];
        const n = invocations.length;
        return fc
          .record({
            down: stretchArb(count, n),
            pause: stretchArb(count, n),
            faults: fc.array(laneFault, { minLength: n, maxLength: n }),
            missing: fc.integer({ min: 0, max: count - 1 }),
          })
          .map(({ down, pause, faults, missing }) => ({
            ...base,
            fifo: false,
            quarantine: true,
            redrive: undefined,
            lanes,
            invocations: invocations.map((spec, at) => ({
              ...spec,
              // An operator pauses an endpoint that is down: its events all fail and park at once.
              modes: spec.modes.map((mode, i) =>
                within(down, i, at) || within(pause, i, at) ? ('down' as const) : mode,
              ),
              lane: {
                fault: faults[at]!,
                missing,
                paused: spec.modes.map((_mode, i) => within(pause, i, at)),
              },
            })),
          }));
      });
  });
