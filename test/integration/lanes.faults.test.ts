import { type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { CreateQueueCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createIngest, type Ingest, idempotencyKey, loadConfig } from '../../lib/index';
import { createEdges } from '../../lib/ingest/edges';
import { LANE_ATTRIBUTE, type LaneEnvelope } from '../../lib/lanes';
import { REDRIVE_MARKER } from '../../lib/redrive/marker';
import { MAX_RETRY_WAIT_S } from '../../lib/subscription/schema';
import {
  closedEndpoint,
  createLedgerTable,
  createQueue,
  type LocalQueue,
  localDynamoDb,
  localSqs,
  pollUntil,
  receiveAll,
  uniqueName,
} from '../support/aws';
import { TestEndpoint } from '../support/endpoints';
import { lambdaContext, sqsEvent } from '../support/events';
import { laneRecord } from '../support/lanes';
import { captureLogs, type LogLine } from '../support/logs';

// The lane path's faults and edges, apart from lanes.test.ts: beta has a lane queue; gamma is configured without one.
// Three steps, each a different wait: a wait read from the wrong step is seen.
const SCHEDULE = [1, 2, 4];
const SOURCE = 'urn:test:orders';

let sqs: SQSClient;
let dynamodb: DynamoDBClient;
let beta: TestEndpoint;
let gamma: TestEndpoint;
/** The lane queues' name prefix, and their URL prefix (LANE_QUEUE_URL_PREFIX). */
let stage: string;
let prefix: string;
let laneUrl: string;
let dlq: LocalQueue;
let ingest: Ingest | undefined;

beforeAll(async () => {
  sqs = localSqs();
  dynamodb = localDynamoDb();
  [beta, gamma] = await Promise.all([TestEndpoint.start(), TestEndpoint.start()]);
  stage = `${uniqueName('lanefaults')}-lane-`;
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: `${stage}beta` }));
  laneUrl = QueueUrl!;
  prefix = laneUrl.slice(0, -'beta'.length);
  dlq = await createQueue(sqs, 'lanefaults-dlq');
});

afterAll(async () => {
  await Promise.all([beta.close(), gamma.close()]);
  sqs.destroy();
  dynamodb.destroy();
});

afterEach(async () => {
  await ingest?.close();
  ingest = undefined;
  beta.reset();
  gamma.reset();
});

/** The function on this file's stage, its log lines read back; `env` and `ledgerClient` vary what it is wired to. */
async function stageIngest(env: Record<string, string> = {}, ledgerClient: DynamoDBClient = dynamodb) {
  const document = {
    endpoints: [
      { name: 'beta', url: beta.url, retrySchedule: SCHEDULE },
      { name: 'gamma', url: gamma.url, retrySchedule: SCHEDULE },
    ],
  };
  const variables = {
    DELIVERY_MAX_ATTEMPTS: '1',
    QUARANTINE_QUEUE_URL: dlq.url,
    LANE_QUEUE_URL_PREFIX: prefix,
    ...env,
  };
  const config = loadConfig(variables, { document, source: 'lanes-faults.yml' });
  const edges = await createEdges(config, { sqs, dynamodb: ledgerClient });
  const { logger, metrics, lines } = captureLogs();
  ingest = createIngest(config, {
    quarantine: edges.quarantine,
    lanes: edges.lanes,
    ledger: edges.ledger,
    logger,
    metrics,
  });
  return { run: ingest, lines };
}

const laneRecordOf = (endpoint: 'beta' | 'gamma', id: string, envelope: Partial<LaneEnvelope> = {}) =>
  laneRecord(`${stage}${endpoint}`, endpoint, id, envelope);

const failedIds = (response: SQSBatchResponse) => response.batchItemFailures.map((item) => item.itemIdentifier).sort();

const withMessage = (lines: LogLine[], message: string) => lines.filter((line) => line.message === message);

/** Beta's lane messages of the events `ids`, by event id, once all are there (what is received stays hidden). */
async function inBetaLane(ids: string[]): Promise<Map<string, Message>> {
  const found = new Map<string, Message>();
  return pollUntil(`${ids.join(', ')} in the beta lane`, async () => {
    for (const message of await receiveAll(sqs, laneUrl, { visibilityTimeoutS: 300, waitTimeSeconds: 1 })) {
      found.set(JSON.parse(message.Body!).id, message);
    }
    return ids.every((id) => found.has(id)) ? found : undefined;
  });
}

const envelopeOf = (message: Message | undefined): LaneEnvelope =>
  JSON.parse(message?.MessageAttributes?.[LANE_ATTRIBUTE]?.StringValue ?? 'null');

const LOOKUP_DOWN = 'delivery ledger unavailable; delivering every due lane record';
const RECORD_DOWN = 'delivery ledger not updated for lane deliveries; a duplicate would be delivered again';
const QUARANTINE_DOWN = 'quarantine failed; the lane records stay on the lane';
const TO_QUARANTINE = 'lane record to the quarantine';
const NOT_QUARANTINED =
  "lane record not quarantined (no QUARANTINE_QUEUE_URL); reported failed, it comes back until the lane's redrive policy moves it to the DLQ";

describe('lane path: the ledger', () => {
  it('delivers a due lane record when the ledger cannot be reached, and says a duplicate would go again', async () => {
    // A real DynamoDB client at a loopback port where nothing listens: both ledger calls are refused.
    const down = localDynamoDb(await closedEndpoint());
    const { run, lines } = await stageIngest({ DELIVERY_LEDGER_TABLE: 'lanes-ledger-down' }, down);
    const record = laneRecordOf('beta', 'ledger-down-1');
    expect(failedIds(await run.handle(sqsEvent([record]), lambdaContext()))).toEqual([]);
    expect(beta.received.map((request) => request.eventId)).toEqual(['ledger-down-1']);
    expect(withMessage(lines, LOOKUP_DOWN)).toEqual([
      expect.objectContaining({ level: 'WARN', error: expect.stringContaining('lookup on table lanes-ledger-down') }),
    ]);
    expect(withMessage(lines, RECORD_DOWN)).toEqual([
      expect.objectContaining({
        level: 'WARN',
        endpoint: 'beta',
        error: expect.stringContaining('record on table lanes-ledger-down'),
      }),
    ]);
    down.destroy();
  });

  it('writes only the events the lane delivered to the ledger, under the lane’s name, without a warning', async () => {
    const table = await createLedgerTable(dynamodb, 'lanefaults-ledger');
    const { run, lines } = await stageIngest({ DELIVERY_LEDGER_TABLE: table });
    beta.respond((request) => ({ status: request.eventId === 'failing-1' ? 503 : 200 }));
    const delivered = laneRecordOf('beta', 'written-1');
    const later = laneRecordOf('beta', 'later-1', { d: Date.now() + 60_000 });
    const failing = laneRecordOf('beta', 'failing-1');
    const response = await run.handle(sqsEvent([delivered, later, failing]), lambdaContext());
    expect(failedIds(response)).toEqual([]);
    // Sent back to wait or to retry is not delivered: an entry for either would acknowledge its next copy undelivered.
    const scanned = await dynamodb.send(new ScanCommand({ TableName: table }));
    expect(scanned.Items?.map((item) => item.id?.S)).toEqual([`${idempotencyKey(SOURCE, 'written-1')}#lane:beta`]);
    // Events the ledger has never seen are its usual answer, not an outage: nothing to warn of.
    expect(lines.filter((line) => line.level === 'WARN')).toEqual([]);
  });
});

describe('lane path: the quarantine', () => {
  it('keeps a rejected lane record failed when the quarantine queue is missing, and says what went wrong', async () => {
    beta.respond(() => ({ status: 422 }));
    // A real queue URL on the local SQS whose queue does not exist: the quarantine's send is refused.
    const { run, lines } = await stageIngest({ QUARANTINE_QUEUE_URL: `${dlq.url}-missing` });
    const record = laneRecordOf('beta', 'poison-1');
    expect(failedIds(await run.handle(sqsEvent([record]), lambdaContext()))).toEqual([record.messageId]);
    expect(withMessage(lines, TO_QUARANTINE)).toEqual([
      expect.objectContaining({
        level: 'WARN',
        endpoint: 'beta',
        reason: 'rejected-by-endpoint',
        detail: 'beta answered 422',
        eventId: 'poison-1',
        messageId: record.messageId,
      }),
    ]);
    expect(withMessage(lines, QUARANTINE_DOWN)).toEqual([
      expect.objectContaining({ level: 'ERROR', error: expect.stringContaining(`${dlq.url}-missing`) }),
    ]);
  });

  it('without a ledger or a quarantine queue, delivers, keeps the poison failed, and warns of neither', async () => {
    beta.respond((request) => ({ status: request.eventId === 'poison-2' ? 400 : 200 }));
    const { run, lines } = await stageIngest({ QUARANTINE_QUEUE_URL: '' });
    const good = laneRecordOf('beta', 'plain-1');
    const poison = laneRecordOf('beta', 'poison-2');
    expect(failedIds(await run.handle(sqsEvent([good, poison]), lambdaContext()))).toEqual([poison.messageId]);
    expect(beta.received.map((request) => request.eventId).sort()).toEqual(['plain-1', 'poison-2']);
    // No ledger and no quarantine are configuration, not failures: no line says a ledger or quarantine call failed.
    for (const message of [LOOKUP_DOWN, RECORD_DOWN, QUARANTINE_DOWN]) expect(withMessage(lines, message)).toEqual([]);
    expect(lines.filter((line) => line.level === 'ERROR')).toEqual([]);
    // Nothing goes to a quarantine that is not there: the line says where the poison goes instead.
    expect(withMessage(lines, TO_QUARANTINE)).toEqual([]);
    expect(withMessage(lines, NOT_QUARANTINED)).toEqual([
      expect.objectContaining({ level: 'WARN', endpoint: 'beta', reason: 'rejected-by-endpoint', eventId: 'poison-2' }),
    ]);
  });
});

describe('lane path: sends back, redrives and the deadline', () => {
  it('sends a record due after the longest wait a schedule may have (12 h) back to wait, not to the quarantine', async () => {
    const record = laneRecordOf('beta', 'longest-1', { d: Date.now() + MAX_RETRY_WAIT_S * 1000 });
    const { run, lines } = await stageIngest();
    expect(failedIds(await run.handle(sqsEvent([record]), lambdaContext()))).toEqual([]);
    expect(withMessage(lines, TO_QUARANTINE)).toEqual([]);
    expect(withMessage(lines, 'lane batch processed')).toEqual([
      expect.objectContaining({ endpoint: 'beta', waitingEventIds: 'longest-1' }),
    ]);
  });

  it('keeps every not-due record failed when the lane is missing, the warning naming at most 5 errors', async () => {
    // gamma has no lane queue: 60 records are 6 refused SendMessageBatch calls, 6 errors.
    const records = Array.from({ length: 60 }, (_, n) =>
      laneRecordOf('gamma', `later-${n}`, { d: Date.now() + 60_000 }),
    );
    const { run, lines } = await stageIngest();
    const response = await run.handle(sqsEvent(records), lambdaContext());
    expect(failedIds(response)).toEqual(records.map((record) => record.messageId).sort());
    const warned = withMessage(
      lines,
      'lane records not sent back to the lane; they come back after the visibility timeout',
    );
    expect(warned).toHaveLength(1);
    // A batch of 10,000 must not write a thousand errors into one line.
    expect(warned[0]?.errors).toEqual(Array(5).fill(expect.stringContaining(`${prefix}gamma`)));
  });

  it('delivers a dead-lettered copy a redrive moved back at once, though its envelope said later', async () => {
    // Dead-lettered while it waited (its sends back failed until SQS's maxReceiveCount): due in a minute.
    const redriven = laneRecordOf('beta', 'redriven-later-1', { a: SCHEDULE.length, d: Date.now() + 60_000 });
    redriven.messageAttributes[REDRIVE_MARKER] = {
      dataType: 'String',
      stringValue: dlq.arn,
      stringListValues: [],
      binaryListValues: [],
    };
    const { run } = await stageIngest();
    expect(failedIds(await run.handle(sqsEvent([redriven]), lambdaContext()))).toEqual([]);
    expect(beta.received.map((request) => request.eventId)).toEqual(['redriven-later-1']);
  });

  it('keeps a lane record failed when the deadline cuts its delivery: not the endpoint’s failure, no attempt spent', async () => {
    beta.respond(() => ({ hang: true }));
    const { run, lines } = await stageIngest({ DELIVERY_TIMEOUT_MS: '30000', DEADLINE_MARGIN_MS: '1000' });
    const record = laneRecordOf('beta', 'cut-1', { a: 1 });
    // Deliveries stop 1 s before the end (at 1.5 s): the endpoint has not answered by then.
    const response = await run.handle(sqsEvent([record]), lambdaContext(2_500));
    expect(failedIds(response)).toEqual([record.messageId]);
    expect(beta.received.map((request) => request.eventId)).toEqual(['cut-1']);
    expect(withMessage(lines, 'lane batch processed')).toEqual([
      expect.objectContaining({ endpoint: 'beta', records: 1, failed: 1, delivered: 0, exhausted: 0 }),
    ]);
    // Not quarantined, not sent back to wait with an attempt spent: it comes back after the visibility timeout.
    expect(withMessage(lines, TO_QUARANTINE)).toEqual([]);
  });
});

describe('lane path: what the batch line and the warnings say', () => {
  it('names the events delivered and those sent back to wait, in order, and no unrouted line', async () => {
    const { run, lines } = await stageIngest();
    const later = { d: Date.now() + 60_000 };
    const records = [
      laneRecordOf('beta', 'named-1'),
      laneRecordOf('beta', 'named-2', later),
      laneRecordOf('beta', 'named-3'),
      laneRecordOf('beta', 'named-4', later),
    ];
    expect(failedIds(await run.handle(sqsEvent(records), lambdaContext()))).toEqual([]);
    // The event history finds an event's lane deliveries and waits by these comma-joined ids.
    expect(withMessage(lines, 'lane batch processed')).toEqual([
      expect.objectContaining({
        endpoint: 'beta',
        delivered: 2,
        deliveredEventIds: 'named-1,named-3',
        waitingEventIds: 'named-2,named-4',
      }),
    ]);
    expect(withMessage(lines, 'lane records no longer routed to their endpoint; acknowledged')).toEqual([]);
  });

  it('says why it quarantines a record due too far ahead, or whose envelope names another event', async () => {
    const { run, lines } = await stageIngest();
    const aheadMs = 50_000_000;
    const ahead = laneRecordOf('beta', 'ahead-1', { d: Date.now() + aheadMs });
    const misnamed = laneRecordOf('beta', 'misnamed-1', { k: idempotencyKey(SOURCE, 'another-1') });
    expect(failedIds(await run.handle(sqsEvent([ahead, misnamed]), lambdaContext()))).toEqual([]);
    expect(beta.received).toEqual([]);
    const why = new Map(withMessage(lines, TO_QUARANTINE).map((line) => [line.eventId, String(line.detail)]));
    expect(why.get('misnamed-1')).toBe(`'${LANE_ATTRIBUTE}' key 'k' is not the key of the event in the body`);
    const [, seconds] = /^'d' is (\d+) s ahead; no lane wait is over 43200 s$/.exec(why.get('ahead-1') ?? '') ?? [];
    // Seconds from the batch's start, a moment after the record was built.
    expect(Number(seconds)).toBeGreaterThan(aheadMs / 1000 - 60);
    expect(Number(seconds)).toBeLessThanOrEqual(aheadMs / 1000);
  });
});

describe('lane path: the open breaker', () => {
  it('sends a refused record back with its own step’s wait, or the last step’s once past the schedule', async () => {
    beta.respond(() => ({ status: 503 }));
    const { run } = await stageIngest({ CIRCUIT_BREAKER_THRESHOLD: '1', CIRCUIT_BREAKER_HALF_OPEN_MS: '900000' });
    const opens = laneRecordOf('beta', 'opens-1');
    expect(failedIds(await run.handle(sqsEvent([opens]), lambdaContext()))).toEqual([]);
    // `a` past the schedule: the endpoint's schedule was shortened since the event was parked.
    const first = laneRecordOf('beta', 'refused-1', { a: 1 });
    const past = laneRecordOf('beta', 'refused-2', { a: SCHEDULE.length + 2 });
    const before = Date.now();
    expect(failedIds(await run.handle(sqsEvent([first, past]), lambdaContext()))).toEqual([]);
    const after = Date.now();
    expect(beta.received.map((request) => request.eventId)).toEqual(['opens-1']);
    const back = await inBetaLane(['refused-1', 'refused-2']);
    const firstWait = SCHEDULE[0]! * 1000;
    const lastWait = SCHEDULE.at(-1)! * 1000;
    expect(envelopeOf(back.get('refused-1'))).toMatchObject({ a: 1, d: expect.any(Number) });
    expect(envelopeOf(back.get('refused-1')).d).toBeGreaterThanOrEqual(before + firstWait);
    expect(envelopeOf(back.get('refused-1')).d).toBeLessThanOrEqual(after + firstWait);
    expect(envelopeOf(back.get('refused-2')).a).toBe(SCHEDULE.length + 2);
    expect(envelopeOf(back.get('refused-2')).d).toBeGreaterThanOrEqual(before + lastWait);
    expect(envelopeOf(back.get('refused-2')).d).toBeLessThanOrEqual(after + lastWait);
  });
});
