import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import { createIngest, type Ingest, idempotencyKey, loadConfig } from '../../lib/index';
import { type Clock, FuzzEndpoint } from './endpoint';
import { checkInvariants, InvariantViolation, type Observation, recovered } from './invariants';
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
import {
  AttemptLog,
  FakeLedger,
  FakeSqs,
  HEALTHY,
  realBackoff,
  WriteLog,
  watchEventLoop,
  watchedQuarantine,
} from './sides';

function eventBody(spec: RecordSpec, maxEventBytes: number): string {
  const id = `ev-${spec.eventId}`;
  const base = { specversion: '1.0', id, source: SOURCE, type: 'com.example.fuzz' };
  const data = { note: PAYLOAD_MARK };
  switch (spec.kind) {
    case 'valid':
      return JSON.stringify({ ...base, data });
    case 'null-attributes':
      return JSON.stringify({ ...base, subject: null, time: null, datacontenttype: null, dataschema: null, data });
    case 'not-json':
      return `password=${PAYLOAD_MARK}&id=${id}`;
    case 'invalid-cloudevent':
      return JSON.stringify({ ...base, time: PAYLOAD_MARK, data });
    case 'bad-extension':
      return JSON.stringify({ ...base, 'bad\u0001ext': PAYLOAD_MARK, data });
    case 'at-limit':
    case 'over-limit': {
      const shell = JSON.stringify({ ...base, data: { note: PAYLOAD_MARK, pad: '' } });
      const target = maxEventBytes + (spec.kind === 'over-limit' ? 1 : 0);
      return JSON.stringify({ ...base, data: { note: PAYLOAD_MARK, pad: 'x'.repeat(target - shell.length) } });
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

interface World {
  endpoints: FuzzEndpoint[];
  attempts: AttemptLog;
  writes: WriteLog;
  sqs: FakeSqs;
  ledger: FakeLedger | undefined;
  seen: ReturnType<typeof watchedQuarantine>['seen'] | undefined;
  ingest: Ingest;
  unauthenticated: string[];
  credentials: InvocationSpec['credentials'];
}

async function startWorld(scenario: Scenario): Promise<World> {
  const clock: Clock = { tick: 0 };
  const unauthenticated: string[] = [];
  const endpoints = await Promise.all(
    scenario.endpoints.map((script, index) =>
      FuzzEndpoint.start(`e${index}`, script, clock, (endpoint, _key, headers) => {
        if (scenario.credentials && headers.authorization !== `Bearer ${CREDENTIAL_MARK}`) {
          unauthenticated.push(endpoint.name);
        }
      }),
    ),
  );
  const config = loadConfig({
    ENDPOINTS: endpoints.map((endpoint) => `${endpoint.name}=${endpoint.url}`).join(','),
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
  });
  const sqs = new FakeSqs();
  const attempts = new AttemptLog();
  const ledger = scenario.ledger ? new FakeLedger() : undefined;
  const watched = scenario.quarantine ? watchedQuarantine(sqs, scenario.fifo, clock) : undefined;
  const writes = new WriteLog(new Map(endpoints.map((endpoint) => [endpoint.name, endpoint.url])));
  const world: Omit<World, 'ingest'> & { ingest?: Ingest } = {
    endpoints,
    attempts,
    writes,
    sqs,
    ledger,
    seen: watched?.seen,
    unauthenticated,
    credentials: 'ok',
  };
  const credential = { kind: 'bearer' as const, token: CREDENTIAL_MARK };
  const source = async () => {
    if (world.credentials === 'throw') throw new Error('ThrottlingException: Rate exceeded');
    if (world.credentials === 'slow') await wait(2_000);
    return credential;
  };
  const ingest = createIngest(config, {
    logger: new Logger({ serviceName: 'fuzz', logLevel: 'DEBUG' }),
    metrics: new Metrics({ serviceName: 'fuzz', namespace: 'Fuzz' }),
    tracer: attempts.tracer,
    ...(watched ? { quarantine: watched.quarantine } : {}),
    ...(scenario.backoff ? { backoff: realBackoff(sqs, scenario.retryBaseDelayS, scenario.retryMaxDelayS) } : {}),
    ...(ledger ? { ledger } : {}),
    ...(scenario.credentials
      ? {
          credentials: async () => {
            await source();
            return new Map(endpoints.map((endpoint) => [endpoint.name, credential]));
          },
          refreshCredential: source,
        }
      : {}),
  });
  return Object.assign(world, { ingest });
}

function buildRecord(spec: RecordSpec, scenario: Scenario, serial: number): ModelRecord {
  const messageId = `m-${serial}`;
  const arn = `arn:aws:sqs:us-east-1:123456789012:source${scenario.fifo ? '.fifo' : ''}`;
  const record: SQSRecord = {
    messageId,
    receiptHandle: `rh-${messageId}-1`,
    body: eventBody(spec, scenario.maxEventBytes),
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
  return { record, spec, key: idempotencyKey(SOURCE, `ev-${spec.eventId}`), poison: POISON_KINDS.has(spec.kind) };
}

/** The same message back from SQS: one more receive, a new receipt handle. */
function redeliver(item: ModelRecord, invocation: number): ModelRecord {
  const count = Number(item.record.attributes.ApproximateReceiveCount) + 1;
  return {
    ...item,
    record: {
      ...item.record,
      receiptHandle: `rh-${item.record.messageId}-${invocation + 1}`,
      attributes: { ...item.record.attributes, ApproximateReceiveCount: String(count) },
    },
  };
}

/**
 * Recovery invocations at most: another one runs only while an endpoint was not seen answering because every request
 * the product sent it ended on the product's own DELIVERY_TIMEOUT_MS while the process was starved (see I4).
 */
export const MAX_RECOVERIES = 3;

/**
 * Runs the scenario's invocations in a row on one warm instance, redelivering what each reported failed, then a
 * recovery invocation (every endpoint and side effect healthy, one half-open period later, with a fresh probe
 * record), repeated as MAX_RECOVERIES says. Throws an InvariantViolation at the first broken invariant.
 */
export async function runScenario(scenario: Scenario, ignored?: ReadonlySet<string>): Promise<void> {
  const world = await startWorld(scenario);
  let serial = 0;
  try {
    let pending: ModelRecord[] = [];
    const last = scenario.invocations.length + MAX_RECOVERIES - 1;
    for (let index = 0; index <= last; index++) {
      const recovery = index >= scenario.invocations.length;
      const spec = recovery
        ? {
            // Room for a loaded machine: the rule is about the breaker letting requests through, not about speed.
            remainingMs: 5_000,
            modes: scenario.endpoints.map(() => 'healthy' as const),
            faults: HEALTHY,
            credentials: 'ok' as const,
            records: [{ kind: 'valid' as const, eventId: 100 + index, group: 9 }],
          }
        : scenario.invocations[index]!;
      // Time passes between invocations: the recovery one starts a full half-open period after the endpoints healed.
      if (recovery) await wait(scenario.halfOpenMs + 5);
      const batch = [...pending, ...spec.records.map((record) => buildRecord(record, scenario, serial++))];
      for (const [i, endpoint] of world.endpoints.entries()) endpoint.beginInvocation(spec.modes[i] ?? 'script');
      world.attempts.beginInvocation();
      world.writes.beginInvocation();
      world.sqs.faults = spec.faults;
      world.credentials = spec.credentials;
      world.sqs.visibility = [];
      if (world.ledger) world.ledger.faults = spec.faults;
      if (world.seen) {
        world.seen.sent = [];
        world.seen.confirmed = new Map();
      }
      world.unauthenticated.length = 0;
      const ledgerBefore = world.ledger?.snapshot();
      const started = Date.now();
      const deadlineAt = started + spec.remainingMs;
      const loop = recovery ? watchEventLoop() : undefined;
      const output = captureOutput();
      let response: SQSBatchResponse;
      try {
        response = await world.ingest.handle(
          { Records: batch.map((item) => item.record) },
          { getRemainingTimeInMillis: () => Math.max(0, deadlineAt - Date.now()) },
        );
      } catch (error) {
        // Lambda would count the whole batch failed, delivered records included: no answer is an I2 failure.
        throw new InvariantViolation('I2', index, `no answer: handle threw ${String(error)}`);
      } finally {
        output.restore();
      }
      const loopDelayMaxMs = loop?.stop();
      const observation: Observation = {
        scenario,
        index,
        recovery,
        lastRecovery: index === last,
        batch,
        response,
        answeredAt: Date.now(),
        deadlineAt,
        endpoints: world.endpoints,
        attempts: world.attempts.now,
        written: world.writes.now,
        ...(loopDelayMaxMs === undefined ? {} : { loopDelayMaxMs }),
        ledgerBefore,
        ledgerAfter: world.ledger?.snapshot(),
        quarantine: world.seen,
        visibility: world.sqs.visibility,
        output: output.lines.join(''),
        unauthenticated: [...world.unauthenticated],
      };
      checkInvariants(observation, ignored);
      if (recovery && world.endpoints.every((endpoint) => recovered(observation, endpoint))) break;
      const failed = new Set(response.batchItemFailures.map((item) => item.itemIdentifier));
      pending = batch.filter((item) => failed.has(item.record.messageId)).map((item) => redeliver(item, index));
    }
  } finally {
    world.writes.close();
    await world.ingest.close();
    await Promise.all(world.endpoints.map((endpoint) => endpoint.close()));
  }
}
