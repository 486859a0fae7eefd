import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { SQSRecord } from 'aws-lambda';
import { createIngest, type Ingest, idempotencyKey, loadConfig } from '../../lib/index';
import { MAX_DELAY_S } from '../../lib/lanes/envelope';
import { MAX_RETRY_WAIT_S, type Match } from '../../lib/subscription/schema';
import type { QuarantineItem } from '../../lib/types';
import { type Clock, FuzzEndpoint } from './endpoint';
import { checkInvariants, InvariantViolation, type Observation, recovered, tokenFailedLately } from './invariants';
import { checkEndState, checkLaneRound, inFlightBound } from './lane-invariants';
import { LANE_BATCH, LaneQueues } from './lanes';
import { DeadLetters, DynaliteLedger, type LocalAws } from './local-aws';
import { EventRegistry, type ReceiverSide, rateProblem, requestProblems, TokenServer } from './receiver';
import {
  CREDENTIAL_MARK,
  type InvocationSpec,
  type ModelRecord,
  PAYLOAD_MARK,
  POISON_KINDS,
  type RecordSpec,
  type Scenario,
  SOURCE,
} from './scenario';
import { AttemptLog, FakeSqs, HEALTHY, realBackoff, WriteLog, watchEventLoop, watchedQuarantine } from './sides';
import { type EventShape, endpointSecrets, fileEntry, modelRoutes } from './subscriptions';

/** The JSON of one message for event `spec.eventId`, whose attributes come from the scenario's event shapes. */
function eventBody(spec: RecordSpec, shape: EventShape, maxEventBytes: number): string {
  const id = `ev-${spec.eventId}`;
  const base = {
    specversion: '1.0',
    id,
    source: shape.source,
    type: shape.type,
    ...(shape.subject !== undefined ? { subject: shape.subject } : {}),
    ...shape.extensions,
  };
  const data = {
    json: { data: { note: PAYLOAD_MARK } },
    null: { data: null },
    absent: {},
    base64: { datacontenttype: 'application/octet-stream', data_base64: Buffer.from(PAYLOAD_MARK).toString('base64') },
    text: { datacontenttype: 'text/plain', data: `note ${PAYLOAD_MARK}` },
  }[shape.data];
  switch (spec.kind) {
    case 'valid':
      return JSON.stringify({ ...base, ...data });
    case 'null-attributes':
      // Null is absent (JSON format 1.0.2, 2.2): routing and content modes must read these as the valid kind.
      return JSON.stringify({
        ...(shape.subject === undefined ? { subject: null } : {}),
        ...base,
        time: null,
        dataschema: null,
        ...('datacontenttype' in data ? {} : { datacontenttype: null }),
        ...data,
      });
    case 'not-json':
      return `password=${PAYLOAD_MARK}&id=${id}`;
    case 'invalid-cloudevent':
      return JSON.stringify({ ...base, time: PAYLOAD_MARK, ...data });
    case 'bad-extension':
      return JSON.stringify({ ...base, 'bad\u0001ext': PAYLOAD_MARK, ...data });
    case 'at-limit':
    case 'over-limit': {
      const shell = JSON.stringify({ ...base, data: { note: PAYLOAD_MARK, pad: '' } });
      const target = maxEventBytes + (spec.kind === 'over-limit' ? 1 : 0);
      return JSON.stringify({
        ...base,
        data: { note: PAYLOAD_MARK, pad: 'x'.repeat(Math.max(0, target - shell.length)) },
      });
    }
  }
}

function captureOutput(): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const writes = [process.stdout, process.stderr].map((stream) => {
    const original = stream.write;
    stream.write = ((chunk: string | Uint8Array) => {
      lines.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      return true;
    }) as typeof stream.write;
    return () => {
      stream.write = original;
    };
  });
  return {
    lines,
    restore: () => {
      for (const restore of writes) restore();
    },
  };
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How often each feature was exercised in this process: `npm run fuzz` prints it, to show no check is vacuous. */
export const coverage = new Map<string, number>();
const count = (what: string, n = 1) => coverage.set(what, (coverage.get(what) ?? 0) + n);

function countRequest(side: ReceiverSide): void {
  count('requests verified');
  count(`requests ${side.spec.contentMode ?? 'structured'}`);
  if (side.spec.signing !== 'none') count(`requests signed ${side.spec.signing}`);
  if (side.spec.auth !== 'none') count(`requests auth ${side.spec.auth}`);
  if (side.spec.filter) count('requests through a filter');
}

interface World {
  endpoints: FuzzEndpoint[];
  attempts: AttemptLog;
  writes: WriteLog;
  sqs: FakeSqs;
  ledger: DynaliteLedger | undefined;
  deadLetters: DeadLetters | undefined;
  tokens: TokenServer;
  registry: EventRegistry;
  /** What the endpoints' verifiers found wrong in the requests of the current invocation. */
  problems: Array<{ rule: string; detail: string }>;
  seen: ReturnType<typeof watchedQuarantine>['seen'] | undefined;
  ingest: Ingest;
  credentials: InvocationSpec['credentials'];
  /** When the endpoints' token buckets were made (performance.now()). */
  bucketsSince: number;
  /** Every secret value of the endpoints file: none may reach a log line (I5). */
  secretValues: string[];
  /** Lanes scenarios: the lane queues on local SQS, the endpoints paused now, every quarantine item confirmed. */
  lanes: LaneQueues | undefined;
  paused: Set<string>;
  settled: readonly QuarantineItem[];
}

/** The endpoints file of the scenario, the secret values its references name, and each receiver's side of it. */
function endpointsFile(scenario: Scenario, endpoints: FuzzEndpoint[], tokenUrl: string) {
  const sides: ReceiverSide[] = [];
  const values = new Map<string, string>();
  const entries = endpoints.map((endpoint, i) => {
    const spec = scenario.subscriptions[i]!;
    const secrets = endpointSecrets(endpoint.name, spec, CREDENTIAL_MARK);
    const file = fileEntry(endpoint.name, endpoint.url, spec, secrets, tokenUrl);
    for (const [key, value] of file.values) values.set(key, value);
    const retrySchedule = scenario.lanes?.schedules[i];
    // ENDPOINT_CREDENTIALS' bearer token goes only where the file sets no auth (the function refuses both).
    const bearer = scenario.credentials && spec.auth === 'none' ? CREDENTIAL_MARK : undefined;
    sides.push({ name: endpoint.name, spec, secrets, ...(bearer ? { bearer } : {}) });
    return retrySchedule ? { ...file.entry, retrySchedule } : file.entry;
  });
  return { document: { endpoints: entries }, values, sides };
}

function configOf(scenario: Scenario, document: unknown, lanePrefix: string | undefined) {
  return loadConfig(
    {
      DELIVERY_TIMEOUT_MS: String(scenario.deliveryTimeoutMs),
      DELIVERY_MAX_ATTEMPTS: String(scenario.maxAttempts),
      DELIVERY_RETRY_BASE_MS: '5',
      DELIVERY_RETRY_MAX_MS: '40',
      ENDPOINT_MAX_CONNECTIONS: String(scenario.maxConnections),
      DEADLINE_MARGIN_MS: '500',
      MAX_EVENT_BYTES: String(scenario.maxEventBytes),
      CIRCUIT_BREAKER_THRESHOLD: String(scenario.breakerThreshold),
      CIRCUIT_BREAKER_HALF_OPEN_MS: String(scenario.halfOpenMs),
      RETRY_BASE_DELAY_S: String(scenario.retryBaseDelayS),
      RETRY_MAX_DELAY_S: String(scenario.retryMaxDelayS),
      DELIVERY_LEDGER_MODE: scenario.ledgerMode,
      ...(scenario.lanes && lanePrefix
        ? { LANE_QUEUE_URL_PREFIX: lanePrefix, PARK_AFTER_S: String(scenario.lanes.parkAfterS) }
        : {}),
    },
    { document, source: 'fuzz endpoints file' },
  );
}

async function startWorld(scenario: Scenario, aws: LocalAws): Promise<World> {
  const clock: Clock = { tick: 0 };
  const problems: World['problems'] = [];
  const registry = new EventRegistry();
  const sides = new Map<string, ReceiverSide>();
  const clients = new Map<string, string>();
  const tokens = await TokenServer.start(clients);
  const endpoints = await Promise.all(
    scenario.endpoints.map((script, index) =>
      FuzzEndpoint.start(`e${index}`, script, clock, (endpoint, key, headers, body) => {
        const side = sides.get(endpoint.name)!;
        countRequest(side);
        problems.push(...requestProblems(side, registry, tokens, key, headers, body));
      }),
    ),
  );
  const file = endpointsFile(scenario, endpoints, tokens.url);
  for (const side of file.sides) {
    sides.set(side.name, side);
    if (side.secrets.clientSecret) clients.set(`client-${side.name}`, side.secrets.clientSecret);
  }
  const names = endpoints.map((endpoint) => endpoint.name);
  const lanes = scenario.lanes ? await LaneQueues.create(aws, names, scenario.lanes.intervalS) : undefined;
  const config = configOf(scenario, file.document, lanes?.prefix);
  const sqs = new FakeSqs();
  const attempts = new AttemptLog();
  const ledger = scenario.ledger ? await DynaliteLedger.create(aws, names, config.ledgerTtlS) : undefined;
  const deadLetters = scenario.redrive && !scenario.fifo ? await DeadLetters.create(aws) : undefined;
  const watched = scenario.quarantine ? watchedQuarantine(sqs, scenario.fifo, clock) : undefined;
  const writes = new WriteLog(new Map(endpoints.map((endpoint) => [endpoint.name, endpoint.url])));
  const world: Omit<World, 'ingest' | 'bucketsSince'> & { ingest?: Ingest } = {
    endpoints,
    attempts,
    writes,
    sqs,
    ledger,
    deadLetters,
    tokens,
    registry,
    problems,
    seen: watched?.seen,
    credentials: 'ok',
    secretValues: [...file.values.values()],
    lanes,
    paused: new Set(),
    settled: watched?.settled ?? [],
  };
  // The credential and secret sources fail alike: both are SSM / Secrets Manager reads.
  const read = async <T>(value: T): Promise<T> => {
    if (world.credentials === 'throw') throw new Error('ThrottlingException: Rate exceeded');
    if (world.credentials === 'slow') await wait(2_000);
    return value;
  };
  const credential = { kind: 'bearer' as const, token: CREDENTIAL_MARK };
  const bearers = file.sides.filter((side) => side.bearer !== undefined).map((side) => side.name);
  // The token buckets start full when createIngest makes them: no earlier than this.
  const bucketsSince = performance.now();
  const ingest = createIngest(config, {
    logger: new Logger({ serviceName: 'fuzz', logLevel: 'DEBUG' }),
    metrics: new Metrics({ serviceName: 'fuzz', namespace: 'Fuzz' }),
    tracer: attempts.tracer,
    ...(watched ? { quarantine: watched.quarantine } : {}),
    ...(scenario.backoff ? { backoff: realBackoff(sqs, scenario.retryBaseDelayS, scenario.retryMaxDelayS) } : {}),
    ...(ledger ? { ledger: ledger.ledger } : {}),
    ...(file.values.size > 0 ? { secrets: () => read(file.values) } : {}),
    ...(bearers.length > 0
      ? {
          credentials: () => read(new Map(bearers.map((name) => [name, credential]))),
          refreshCredential: () => read(credential),
        }
      : {}),
    // The pause seam (IngestDeps.paused): the harness says which endpoints are paused in each invocation.
    ...(lanes
      ? {
          lanes: lanes.sender,
          paused: async (endpoints: readonly string[]) => ({
            paused: new Set(endpoints.filter((endpoint) => world.paused.has(endpoint))),
            errors: [],
          }),
        }
      : {}),
  });
  return Object.assign(world, { ingest, bucketsSince });
}

/** A message of the batch with what the model knows of it; `record` defaults to a new message of the source queue. */
function modelRecord(spec: RecordSpec, scenario: Scenario, world: World, record: SQSRecord): ModelRecord {
  const shape = shapeOf(scenario, spec.eventId);
  const key = idempotencyKey(shape.source, `ev-${spec.eventId}`);
  const poison = POISON_KINDS.has(spec.kind);
  if (!poison) world.registry.add(key, shape, record.body);
  const routed = new Set(
    world.endpoints.filter((_e, i) => modelRoutes(scenario.subscriptions[i]!.filter, shape)).map((e) => e.name),
  );
  return { record, spec, key, poison, routed };
}

function buildRecord(spec: RecordSpec, scenario: Scenario, world: World, serial: number): ModelRecord {
  const messageId = `m-${serial}`;
  const arn = `arn:aws:sqs:us-east-1:123456789012:source${scenario.fifo ? '.fifo' : ''}`;
  const record: SQSRecord = {
    messageId,
    receiptHandle: `rh-${messageId}-1`,
    body: eventBody(spec, shapeOf(scenario, spec.eventId), scenario.maxEventBytes),
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(Date.now()),
      SenderId: 'AIDAFUZZ',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
      ...(scenario.fifo ? { MessageGroupId: `g${spec.group}`, SequenceNumber: String(serial).padStart(20, '0') } : {}),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: arn,
    awsRegion: 'us-east-1',
  };
  return modelRecord(spec, scenario, world, record);
}

const shapeOf = (scenario: Scenario, eventId: number): EventShape =>
  scenario.events[eventId] ?? recoveryShape(scenario, eventId);

/** Event ids from 100 are the recovery's fresh events: id 100 + 10 × invocation + i is routed to endpoint i. */
const RECOVERY_EVENTS = 100;

/** Attributes that endpoint i's filter takes (by the model's reading): its first value of each attribute it names. */
function recoveryShape(scenario: Scenario, eventId: number): EventShape {
  const filter = scenario.subscriptions[(eventId - RECOVERY_EVENTS) % 10]?.filter;
  const first = (values: Match | Match[] | undefined, fallback: string) => {
    const value = Array.isArray(values) ? values[0] : values;
    return value === undefined ? fallback : typeof value === 'string' ? value : `${value.prefix}recovery`;
  };
  const extensions = Object.fromEntries(
    Object.entries(filter?.extensions ?? {}).map(([name, values]) => [
      name,
      Array.isArray(values) ? values[0]! : values,
    ]),
  );
  return {
    type: first(filter?.type, 'com.example.recovery'),
    source: first(filter?.source, SOURCE),
    ...(filter?.subject ? { subject: first(filter.subject, '') } : {}),
    extensions,
    data: 'json',
  };
}

/**
 * The same message back from SQS: one more receive, a new receipt handle; in a lanes scenario one interval later, so
 * its first receive is that much earlier (what PARK_AFTER_S measures).
 */
function redeliver(item: ModelRecord, invocation: number, intervalS = 0): ModelRecord {
  const count = Number(item.record.attributes.ApproximateReceiveCount) + 1;
  const first = Number(item.record.attributes.ApproximateFirstReceiveTimestamp) - intervalS * 1000;
  return {
    ...item,
    record: {
      ...item.record,
      receiptHandle: `rh-${item.record.messageId}-${invocation + 1}`,
      attributes: {
        ...item.record.attributes,
        ApproximateReceiveCount: String(count),
        ApproximateFirstReceiveTimestamp: String(first),
      },
    },
  };
}

/**
 * Recovery invocations at most: another one runs only while an endpoint was not seen answering because every request
 * the product sent it ended on the product's own DELIVERY_TIMEOUT_MS while the process was starved (see I4).
 */
export const MAX_RECOVERIES = 3;

function recoverySpec(scenario: Scenario, index: number): InvocationSpec {
  return {
    // Room for a loaded machine: the rule is about the breaker letting requests through, not about speed.
    remainingMs: 5_000,
    modes: scenario.endpoints.map(() => 'healthy' as const),
    faults: HEALTHY,
    credentials: 'ok',
    token: 'ok',
    // One fresh event per endpoint, routed there by its filter, each in its own FIFO group: one endpoint still held
    // (see I4's OAuth exception) must not block another's event behind it.
    records: scenario.endpoints.map((_e, i) => ({
      kind: 'valid' as const,
      eventId: RECOVERY_EVENTS + 10 * index + i,
      group: 90 + i,
    })),
  };
}

/** Moves the DLQ back with lib/redrive; what arrives must be what was dead-lettered, byte for byte. */
async function redriven(scenario: Scenario, world: World, index: number): Promise<ModelRecord[]> {
  const dead = world.deadLetters;
  // Before invocation `before`, or before the first recovery when the scenario has fewer invocations.
  const due = Math.min(scenario.redrive?.before ?? -1, scenario.invocations.length);
  if (!dead || dead.waiting.length === 0 || index !== due) return [];
  const bySpec = new Map(dead.specs);
  const { summary, records, expected } = await dead.redrive();
  const got = records.map((record) => record.body).sort();
  if (summary.failed > 0 || summary.moved !== expected.length || got.join('\n') !== expected.sort().join('\n')) {
    throw new InvariantViolation(
      'redrive',
      index,
      `dead-lettered ${expected.length}, redrive moved ${summary.moved} (failed ${summary.failed}), ` +
        `${records.length} arrived in the source queue${got.length === expected.length ? ' with other bodies' : ''}`,
    );
  }
  count('redrives');
  count('messages redriven', records.length);
  return records.map((record) => modelRecord(bySpec.get(record.body)!, scenario, world, record));
}

/** What the token server and the endpoints' request clocks found: client credentials, and each rate limit kept. */
function serverProblems(scenario: Scenario, world: World): Array<{ rule: string; detail: string }> {
  const problems = world.tokens.problems.splice(0).map((detail) => ({ rule: 'I7', detail }));
  for (const [i, endpoint] of world.endpoints.entries()) {
    const rate = scenario.subscriptions[i]!.rateLimitPerSecond;
    const problem =
      rate === undefined ? undefined : rateProblem(endpoint.name, rate, world.bucketsSince, endpoint.arrivals);
    if (problem) problems.push(problem);
  }
  return problems;
}

function beginInvocation(world: World, spec: InvocationSpec): void {
  for (const [i, endpoint] of world.endpoints.entries()) endpoint.beginInvocation(spec.modes[i] ?? 'script');
  world.attempts.beginInvocation();
  world.writes.beginInvocation();
  world.sqs.faults = spec.faults;
  world.credentials = spec.credentials;
  world.tokens.mode = spec.token;
  world.sqs.visibility = [];
  if (world.ledger) world.ledger.faults = spec.faults;
  if (world.seen) {
    world.seen.sent = [];
    world.seen.confirmed = new Map();
  }
  world.problems.length = 0;
  if (world.lanes) {
    const lane = spec.lane ?? { fault: 'ok' as const, missing: 0, paused: [] };
    world.lanes.fault = lane.fault;
    world.lanes.missing = lane.fault === 'missing' ? world.endpoints[lane.missing]?.name : undefined;
    world.lanes.parkedNow = new Set();
    world.paused = new Set(world.endpoints.filter((_e, i) => lane.paused[i]).map((endpoint) => endpoint.name));
  }
}

/**
 * No side effect that can keep a record in flight fails in the invocation (credentials, lane sends; on the source also
 * the quarantine, which poison waits for): what it leaves in flight is the product's choice, and L3 counts it.
 */
function healthy(spec: InvocationSpec, source: boolean): boolean {
  return (
    spec.credentials === 'ok' && (spec.lane?.fault ?? 'ok') === 'ok' && (!source || spec.faults.quarantine === 'ok')
  );
}

/** How long past its deadline an invocation may go unanswered before the fuzz calls it hung (Lambda stops at it). */
const HUNG_AFTER_MS = 10_000;

async function invoke(world: World, records: SQSRecord[], deadlineAt: number, index: number) {
  const output = captureOutput();
  let timer: NodeJS.Timeout | undefined;
  // A handler that never answers would otherwise hang the fuzz itself, with no scenario to replay.
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new InvariantViolation('I2', index, `no answer ${HUNG_AFTER_MS / 1000} s past the deadline: hung`)),
      Math.max(0, deadlineAt - Date.now()) + HUNG_AFTER_MS,
    );
  });
  try {
    const handled = world.ingest.handle(
      { Records: records },
      { getRemainingTimeInMillis: () => Math.max(0, deadlineAt - Date.now()) },
    );
    const response = await Promise.race([handled, hung]);
    return { response, output: output.lines };
  } catch (error) {
    if (error instanceof InvariantViolation) throw error;
    // Lambda would count the whole batch failed, delivered records included: no answer is an I2 failure.
    throw new InvariantViolation('I2', index, `no answer: handle threw ${String(error)}`);
  } finally {
    clearTimeout(timer);
    output.restore();
  }
}

/** What was reported failed goes back to the queue, or to the DLQ once it was received maxReceiveCount times. */
async function requeue(scenario: Scenario, world: World, failed: ModelRecord[], index: number) {
  const limit = world.deadLetters ? scenario.redrive!.maxReceiveCount : Number.POSITIVE_INFINITY;
  const dead = failed.filter((item) => Number(item.record.attributes.ApproximateReceiveCount) >= limit);
  await world.deadLetters?.deadLetter(dead);
  return failed.filter((item) => !dead.includes(item)).map((item) => redeliver(item, index, scenario.lanes?.intervalS));
}

/**
 * Rounds at most, after the recovery, to drain a lanes scenario (its source redeliveries and every lane): a record
 * due the longest wait ahead (12 h) hops through its lane every 15 min, one hop a round (48), plus the schedule's
 * steps and redeliveries. 40 failed seed 2026120732: 10 lane records still hopping towards a due time over 10 h ahead.
 */
const DRAIN_ROUNDS = Math.ceil(MAX_RETRY_WAIT_S / MAX_DELAY_S) + 20;

/** One scenario's run: the world, what is in flight on the source, and the lanes' bounds. */
interface Run {
  scenario: Scenario;
  world: World;
  ignored: ReadonlySet<string> | undefined;
  serial: number;
  /** Reported failed, to be received again. */
  pending: ModelRecord[];
  /** Of those, the ones a failing side effect left in flight (L3 does not count them). */
  excused: Set<string>;
  /** Every record handed to the function (L2 reads the events they carry). */
  received: ModelRecord[];
  sourceBound: { bound: number; text: string };
  laneBound: { bound: number; text: string };
}

/** L3 on the source queue: what the invocation receives and nothing excuses stays under the bound. */
function checkSourceInFlight(run: Run, batch: ModelRecord[], index: number): void {
  if (!run.scenario.lanes || run.ignored?.has('L3')) return;
  const counted = batch.filter((item) => !run.excused.has(item.record.messageId)).length;
  if (counted > run.sourceBound.bound) {
    throw new InvariantViolation(
      'L3',
      index,
      `source queue: ${counted} messages received and not acknowledged (the batch, less ${batch.length - counted} ` +
        `a failing side effect left in flight); the bound is ${run.sourceBound.text}`,
    );
  }
}

/** One invocation on the source queue and its checks; resolves with what it reported failed (none for no batch). */
async function sourceInvocation(
  run: Run,
  spec: InvocationSpec,
  index: number,
  recovery: boolean,
  lastRecovery: boolean,
) {
  const { scenario, world } = run;
  const batch = [
    ...run.pending,
    ...(await redriven(scenario, world, index)),
    ...spec.records.map((record) => buildRecord(record, scenario, world, run.serial++)),
  ];
  if (batch.length === 0) return undefined;
  run.received.push(...batch);
  if (world.lanes) world.lanes.round = index;
  beginInvocation(world, spec);
  checkSourceInFlight(run, batch, index);
  const ledgerBefore = await world.ledger?.snapshot();
  const deadlineAt = Date.now() + spec.remainingMs;
  const loop = recovery ? watchEventLoop() : undefined;
  const records = batch.map((item) => item.record);
  const { response, output } = await invoke(world, records, deadlineAt, index);
  const answeredAt = Date.now();
  // A token request the product gave up on (its timeout is the endpoint's, as short as 40 ms here) is a failure the
  // token server may never have seen: the product holds it all the same.
  if (output.some((line) => line.includes('OAuth token request to'))) world.tokens.lastFailureAt = answeredAt;
  const loopDelayMaxMs = loop?.stop();
  const observation: Observation = {
    scenario,
    index,
    recovery,
    lastRecovery,
    batch,
    response,
    answeredAt,
    deadlineAt,
    endpoints: world.endpoints,
    attempts: world.attempts.now,
    written: world.writes.now,
    ...(loopDelayMaxMs === undefined ? {} : { loopDelayMaxMs }),
    ledgerBefore,
    ledgerAfter: await world.ledger?.snapshot(),
    quarantine: world.seen,
    visibility: world.sqs.visibility,
    output: output.join(''),
    problems: [...world.problems, ...serverProblems(scenario, world)],
    tokenFailedAt: world.tokens.lastFailureAt,
    secrets: world.secretValues,
    ...(world.lanes ? { parked: { now: world.lanes.parkedNow, ever: world.lanes.parkedEver } } : {}),
  };
  checkInvariants(observation, run.ignored);
  count(
    '(message, endpoint) pairs its filter excludes',
    batch.reduce((n, item) => n + (item.poison ? 0 : world.endpoints.length - item.routed.size), 0),
  );
  const failed = new Set(response.batchItemFailures.map((item) => item.itemIdentifier));
  return { observation, failed: batch.filter((item) => failed.has(item.record.messageId)) };
}

/** Hands back what the source reported failed; marks it excused when a side effect failed in that invocation. */
async function settleSource(run: Run, spec: InvocationSpec, failed: ModelRecord[], index: number): Promise<void> {
  run.pending = await requeue(run.scenario, run.world, failed, index);
  run.excused = new Set(healthy(spec, true) ? [] : run.pending.map((item) => item.record.messageId));
  if (run.world.lanes) count('source records parked', run.world.lanes.parkedNow.size);
}

/** One round of every lane's event source (a batch each, at round `round` of virtual time), each with its checks. */
async function laneRounds(run: Run, spec: InvocationSpec, index: number, round: number): Promise<void> {
  const { world } = run;
  const lanes = world.lanes;
  if (!lanes) return;
  lanes.round = round;
  for (const endpoint of world.endpoints) {
    beginInvocation(world, spec);
    let ledgerBefore: Map<string, Set<string>> | undefined;
    let seen = { output: '', answeredAt: 0, deadlineAt: 0 };
    const waiting = (envelope: { d: number }) => world.paused.has(endpoint.name) || envelope.d > Date.now();
    const served = await lanes.serve(
      endpoint.name,
      waiting,
      async (records) => {
        ledgerBefore = await world.ledger?.snapshot();
        const deadlineAt = Date.now() + spec.remainingMs;
        const { response, output } = await invoke(world, records, deadlineAt, index);
        seen = { output: output.join(''), answeredAt: Date.now(), deadlineAt };
        // As for the source: a token request the lane's delivery gave up on holds that endpoint for a while (see I4).
        if (seen.output.includes('OAuth token request to')) world.tokens.lastFailureAt = seen.answeredAt;
        return response;
      },
      healthy(spec, false),
    );
    if (!served) continue;
    count('lane batches');
    count('lane records', served.round.records.length);
    if (world.paused.has(endpoint.name)) count('lane records of a paused endpoint', served.round.records.length);
    checkLaneRound({
      index,
      round: served.round,
      response: served.response,
      ...seen,
      endpoints: world.endpoints,
      ledgerBefore,
      ledgerAfter: await world.ledger?.snapshot(),
      quarantine: world.seen,
      parked: { now: lanes.parkedNow, ever: lanes.parkedEver },
      problems: [...world.problems, ...serverProblems(run.scenario, world)],
      secrets: world.secretValues,
      strays: lanes.strays,
      schedule: run.scenario.lanes?.schedules[world.endpoints.indexOf(endpoint)] ?? [],
      bound: run.laneBound,
      attempts: world.attempts.now,
      tokenHeld: tokenFailedLately(
        run.scenario.subscriptions[world.endpoints.indexOf(endpoint)]?.auth,
        world.tokens.lastFailureAt,
        seen.answeredAt,
      ),
    });
  }
}

/**
 * After the recovery of a lanes scenario, every endpoint healthy and none paused: rounds (virtual time jumping to the
 * next lane message due) until the source and every lane are empty, then L2 on every event received.
 */
async function drain(run: Run, from: number): Promise<void> {
  const { scenario, world } = run;
  if (!world.lanes) return;
  let round = from;
  // One check more than rounds: a drain whose last round empties everything is drained, not a violation.
  for (let i = 0; i <= DRAIN_ROUNDS; i++) {
    const next = world.lanes.nextRound();
    if (run.pending.length === 0 && next === undefined) {
      checkEndState(run.received, world.endpoints, world.settled, round);
      count('lanes scenarios drained');
      return;
    }
    if (i === DRAIN_ROUNDS) break;
    await wait(scenario.halfOpenMs + 5);
    round = Math.max(round + 1, next ?? 0);
    const spec = { ...recoverySpec(scenario, round), records: [] };
    const source = await sourceInvocation(run, spec, round, false, false);
    if (source) await settleSource(run, spec, source.failed, round);
    await laneRounds(run, spec, round, round);
  }
  throw new InvariantViolation(
    'L2',
    round,
    `not drained after ${DRAIN_ROUNDS} rounds with every endpoint healthy and none paused: ` +
      `${run.pending.length} source record(s) still failing; lanes ${world.lanes.describe()}`,
  );
}

function newRun(scenario: Scenario, world: World, ignored: ReadonlySet<string> | undefined): Run {
  const lanes = scenario.lanes ?? { parkAfterS: 0, intervalS: 1, schedules: [] };
  // The most one invocation receives new (a recovery: one per endpoint): the rate, per invocation time.
  const perInvocation = Math.max(world.endpoints.length, ...scenario.invocations.map((spec) => spec.records.length));
  return {
    scenario,
    world,
    ignored,
    serial: 0,
    pending: [],
    excused: new Set(),
    received: [],
    sourceBound: inFlightBound(lanes, perInvocation, perInvocation),
    laneBound: inFlightBound(lanes, LANE_BATCH, LANE_BATCH),
  };
}

/**
 * Runs the scenario's invocations in a row on one warm instance, redelivering what each reported failed (or
 * dead-lettering it, and redriving the DLQ), then a recovery invocation (every endpoint and side effect healthy, one
 * half-open period later, with a fresh event per endpoint), repeated as MAX_RECOVERIES says. With lanes, a round of
 * every lane follows each invocation, and the recovery is followed by a drain. Throws an InvariantViolation at the
 * first broken invariant.
 */
export async function runScenario(scenario: Scenario, aws: LocalAws, ignored?: ReadonlySet<string>): Promise<void> {
  const world = await startWorld(scenario, aws);
  if (world.ledger) count(`scenarios with the dynalite ledger, ${scenario.ledgerMode}`);
  if (world.lanes) count('lanes scenarios');
  const run = newRun(scenario, world, ignored);
  try {
    const last = scenario.invocations.length + MAX_RECOVERIES - 1;
    for (let index = 0; index <= last; index++) {
      const recovery = index >= scenario.invocations.length;
      const spec = recovery ? recoverySpec(scenario, index) : scenario.invocations[index]!;
      // Time passes between invocations: the recovery one starts a full half-open period after the endpoints healed.
      if (recovery) await wait(scenario.halfOpenMs + 5);
      const source = await sourceInvocation(run, spec, index, recovery, index === last);
      if (!source) continue;
      if (recovery && world.endpoints.every((endpoint) => recovered(source.observation, endpoint))) {
        if (!world.lanes) break;
        await settleSource(run, spec, source.failed, index);
        await laneRounds(run, spec, index, index);
        await drain(run, index + 1);
        break;
      }
      await settleSource(run, spec, source.failed, index);
      await laneRounds(run, spec, index, index);
    }
  } finally {
    world.writes.close();
    await world.ingest.close();
    await Promise.all([...world.endpoints.map((endpoint) => endpoint.close()), world.tokens.close()]);
    world.ledger?.close();
    world.deadLetters?.close();
    world.lanes?.close();
  }
}
