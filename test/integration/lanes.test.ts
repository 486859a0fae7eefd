import { CreateQueueCommand, type Message, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createIngest, type Ingest, idempotencyKey, loadConfig } from '../../lib/index';
import { createEdges } from '../../lib/ingest/edges';
import { createLaneSender, encodeEnvelope, LANE_ATTRIBUTE, type LaneEnvelope, type LaneSender } from '../../lib/lanes';
import { readQuarantineAttributes } from '../../lib/settle/quarantine';
import {
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
import { cloudEvent, eventRecord, lambdaContext, sqsEvent } from '../support/events';
import { captureOutput } from '../support/output';

// alpha and beta have lanes; gamma is configured but its lane queue does not exist (a send to it fails).
const NAMES = ['alpha', 'beta', 'gamma'] as const;
type Name = (typeof NAMES)[number];
const SCHEDULE = [1, 2];
const SOURCE = 'urn:test:orders';

let sqs: SQSClient;
let endpoints: Record<Name, TestEndpoint>;
let prefix: string;
let prefixName: string;
let lanes: Record<'alpha' | 'beta', LocalQueue>;
let dlq: LocalQueue;
let ingest: Ingest | undefined;

beforeAll(async () => {
  sqs = localSqs();
  const started = await Promise.all(NAMES.map(() => TestEndpoint.start()));
  endpoints = { alpha: started[0]!, beta: started[1]!, gamma: started[2]! };
  prefixName = `${uniqueName('lanes')}-lane-`;
  const [alpha, beta] = await Promise.all(
    (['alpha', 'beta'] as const).map(async (name) => {
      const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: `${prefixName}${name}` }));
      return {
        url: QueueUrl!,
        name: `${prefixName}${name}`,
        arn: `arn:aws:sqs:us-east-1:123456789012:${prefixName}${name}`,
      };
    }),
  );
  lanes = { alpha: alpha!, beta: beta! };
  prefix = alpha!.url.slice(0, -'alpha'.length);
  dlq = await createQueue(sqs, 'lanes-dlq');
});

afterAll(async () => {
  await Promise.all(Object.values(endpoints).map((endpoint) => endpoint.close()));
  sqs.destroy();
});

afterEach(async () => {
  await ingest?.close();
  ingest = undefined;
  for (const endpoint of Object.values(endpoints)) endpoint.reset();
});

async function pipeline(
  env: Record<string, string> = {},
  client: SQSClient = sqs,
  extra: { lanes?: LaneSender; paused?: (endpoint: string) => boolean } = {},
): Promise<Ingest> {
  const document = {
    endpoints: NAMES.map((name) => ({ name, url: endpoints[name].url, retrySchedule: SCHEDULE })),
  };
  const config = loadConfig(
    {
      DELIVERY_MAX_ATTEMPTS: '1',
      QUARANTINE_QUEUE_URL: dlq.url,
      LANE_QUEUE_URL_PREFIX: prefix,
      ...env,
    },
    { document, source: 'lanes.yml' },
  );
  // No backoff: the source records are not on a real queue, so ChangeMessageVisibility would only log.
  const { quarantine, lanes: send, ledger } = await createEdges(config, { sqs: client, dynamodb: localDynamoDb() });
  ingest = createIngest(config, {
    ...(quarantine ? { quarantine } : {}),
    ...(send ? { lanes: send } : {}),
    ...(ledger ? { ledger } : {}),
    ...extra,
  });
  return ingest;
}

/** The pipeline with its logger on (the suite silences it), for the tests whose behaviour is a log line. */
async function loggingPipeline(): Promise<Ingest> {
  const saved = process.env.POWERTOOLS_LOG_LEVEL;
  process.env.POWERTOOLS_LOG_LEVEL = 'INFO';
  try {
    return await pipeline();
  } finally {
    process.env.POWERTOOLS_LOG_LEVEL = saved ?? 'SILENT';
  }
}

const failedIds = (response: SQSBatchResponse) => response.batchItemFailures.map((item) => item.itemIdentifier).sort();

/** A source record SQS first handed out `ageS` seconds ago. */
function sourceRecord(id: string, ageS: number): SQSRecord {
  const record = eventRecord(id);
  record.attributes.ApproximateFirstReceiveTimestamp = String(Date.now() - ageS * 1000);
  return record;
}

function envelopeOf(message: Message): LaneEnvelope {
  return JSON.parse(message.MessageAttributes?.[LANE_ATTRIBUTE]?.StringValue ?? 'null');
}

/** A message as it sits in `endpoint`'s lane, received the way its event source hands it to the function. */
async function laneRecord(endpoint: Name, id: string, envelope: Partial<LaneEnvelope> = {}): Promise<SQSRecord> {
  const body = JSON.stringify(cloudEvent(id));
  const full: LaneEnvelope = {
    e: endpoint,
    k: idempotencyKey(SOURCE, id),
    f: Date.now() - 60_000,
    a: 1,
    d: Date.now(),
    ...envelope,
  };
  const arn = `arn:aws:sqs:us-east-1:123456789012:${prefixName}${endpoint}`;
  // The record is built, not received: the lane would otherwise hold it in flight for the rest of the test.
  const record = eventRecord(id, { eventSourceARN: arn });
  record.body = body;
  record.messageAttributes = {
    [LANE_ATTRIBUTE]: {
      dataType: 'String',
      stringValue: encodeEnvelope(full),
      stringListValues: [],
      binaryListValues: [],
    },
  };
  return record;
}

/** Messages received so far per queue URL: they stay hidden for the rest of the file, so look-ups search here too. */
const received = new Map<string, Message[]>();

async function laneMessage(endpoint: 'alpha' | 'beta', eventId: string): Promise<Message> {
  return firstMessage(lanes[endpoint].url, eventId, `the ${endpoint} lane`);
}

async function dlqMessage(eventId: string): Promise<Message> {
  return firstMessage(dlq.url, eventId, 'the DLQ');
}

/** Waits for event `eventId` on a queue; what is received stays hidden, so it is kept for later look-ups. */
async function firstMessage(url: string, eventId: string, where: string): Promise<Message> {
  const seen = received.get(url) ?? [];
  received.set(url, seen);
  return pollUntil(`event ${eventId} in ${where}`, async () => {
    seen.push(...(await receiveAll(sqs, url, { visibilityTimeoutS: 300 })));
    return seen.find((message) => JSON.parse(message.Body!).id === eventId);
  });
}

describe('source path with lanes (LANE_QUEUE_URL_PREFIX set)', () => {
  it('parks a down endpoint’s record older than PARK_AFTER_S and acknowledges it; the healthy endpoints got it', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const old = sourceRecord('old-1', 301);
    const young = sourceRecord('young-1', 10);
    // Odd spacing and non-ASCII text: the lane must hold the body byte for byte.
    old.body = `{ "specversion":"1.0","id":"old-1", "source":"${SOURCE}",\n"type":"t", "data":{"name":"Zoë ✓"} }`;
    // The X-Ray trace goes on with the event into the lane.
    const trace = 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1';
    old.attributes.AWSTraceHeader = trace;
    const before = Date.now();
    const response = await (await pipeline({ PARK_AFTER_S: '300' })).handle(sqsEvent([old, young]), lambdaContext());

    // The young record stays failed for beta (today's backoff); the old one is done: delivered or parked.
    expect(failedIds(response)).toEqual([young.messageId]);
    for (const name of ['alpha', 'gamma'] as const) {
      expect(endpoints[name].received.map((request) => request.eventId).sort()).toEqual(['old-1', 'young-1']);
    }
    const parked = await laneMessage('beta', 'old-1');
    expect(parked.Body).toBe(old.body);
    const envelope = envelopeOf(parked);
    expect(envelope).toMatchObject({
      e: 'beta',
      k: idempotencyKey(SOURCE, 'old-1'),
      f: Number(old.attributes.ApproximateFirstReceiveTimestamp),
      a: 1,
    });
    // Due after the schedule's first wait, counted from the park.
    expect(envelope.d).toBeGreaterThanOrEqual(before + SCHEDULE[0]! * 1000);
    expect(parked.Attributes?.AWSTraceHeader).toBe(trace);
  });

  it('parks at once, whatever the record’s age, when the endpoint’s breaker is open', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const run = await pipeline({ CIRCUIT_BREAKER_THRESHOLD: '1', CIRCUIT_BREAKER_HALF_OPEN_MS: '900000' });
    const opens = sourceRecord('young-2', 1);
    expect(failedIds(await run.handle(sqsEvent([opens]), lambdaContext()))).toEqual([opens.messageId]);
    const refused = sourceRecord('young-3', 1);
    expect(failedIds(await run.handle(sqsEvent([refused]), lambdaContext()))).toEqual([]);
    expect(envelopeOf(await laneMessage('beta', 'young-3')).e).toBe('beta');
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['young-2']);
  });

  it('writes a parked endpoint to the ledger when the record goes back for another: a redelivery skips it', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'lanes-ledger');
    endpoints.beta.respond(() => ({ status: 503 }));
    endpoints.gamma.respond(() => ({ status: 503 }));
    const run = await pipeline({ DELIVERY_LEDGER_TABLE: table });
    // gamma has no lane queue: it stays failed, so the record comes back; beta is parked.
    const old = sourceRecord('old-5', 400);
    expect(failedIds(await run.handle(sqsEvent([old]), lambdaContext()))).toEqual([old.messageId]);
    await laneMessage('beta', 'old-5');
    endpoints.gamma.respond(() => ({ status: 200 }));
    const again = { ...old, attributes: { ...old.attributes, ApproximateReceiveCount: '2' } };
    expect(failedIds(await run.handle(sqsEvent([again]), lambdaContext()))).toEqual([]);
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['old-5']);
    expect(endpoints.alpha.received.map((request) => request.eventId)).toEqual(['old-5']);
    // gamma was not parked (no lane): the ledger must not count it done, so the redelivery reaches it.
    expect(endpoints.gamma.received.map((request) => request.eventId)).toEqual(['old-5', 'old-5']);
  });

  it('delivers a parked event from the lane although the park wrote the endpoint to the ledger', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'lanes-ledger');
    endpoints.beta.respond(() => ({ status: 503 }));
    endpoints.gamma.respond(() => ({ status: 503 }));
    const run = await pipeline({ DELIVERY_LEDGER_TABLE: table });
    // gamma has no lane: the record goes back, so settle writes beta (parked) to the ledger.
    const old = sourceRecord('old-7', 400);
    expect(failedIds(await run.handle(sqsEvent([old]), lambdaContext()))).toEqual([old.messageId]);
    const parked = envelopeOf(await laneMessage('beta', 'old-7'));
    endpoints.beta.respond(() => ({ status: 200 }));
    const due = await laneRecord('beta', 'old-7', { ...parked, d: Date.now() });
    expect((await run.handle(sqsEvent([due]), lambdaContext())).batchItemFailures).toEqual([]);
    // The lane is the only copy beta has of the event: acknowledging it undelivered loses the event for beta.
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['old-7', 'old-7']);
  });

  // Review of issue 16: a lane's dead-lettered event redriven to the SOURCE queue (`npm run redrive -- --to <source>`)
  // was skipped for the endpoint it was dead-lettered for, because the park wrote that endpoint to the ledger.
  it('delivers a lane’s dead-lettered event redriven to the source queue to its endpoint', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'lanes-ledger');
    endpoints.beta.respond(() => ({ status: 503 }));
    endpoints.gamma.respond(() => ({ status: 503 }));
    const run = await pipeline({ DELIVERY_LEDGER_TABLE: table });
    const old = sourceRecord('old-8', 400);
    // gamma has no lane: the record goes back, so settle writes beta (parked) to the ledger.
    expect(failedIds(await run.handle(sqsEvent([old]), lambdaContext()))).toEqual([old.messageId]);
    const parked = await laneMessage('beta', 'old-8');
    // beta's lane ran out of retries; an operator redrives the DLQ copy to the source queue once beta is back.
    endpoints.beta.respond(() => ({ status: 200 }));
    endpoints.gamma.respond(() => ({ status: 200 }));
    const redriven = sourceRecord('old-8', 0);
    redriven.messageAttributes = {
      'redrive.from': { dataType: 'String', stringValue: dlq.arn, stringListValues: [], binaryListValues: [] },
      [LANE_ATTRIBUTE]: {
        dataType: 'String',
        stringValue: parked.MessageAttributes![LANE_ATTRIBUTE]!.StringValue!,
        stringListValues: [],
        binaryListValues: [],
      },
    };
    expect(failedIds(await run.handle(sqsEvent([redriven]), lambdaContext()))).toEqual([]);
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['old-8', 'old-8']);
  });

  // Known defect (review of issue 16, not fixed here): body + the `ingest.lane` attribute passes SQS's 1 MiB, so the
  // send is refused on every receive and the record stays on today's path (backoff, then the DLQ). Drop `.fails`
  // once the source refuses or quarantines what cannot park, or the limit leaves room for the envelope.
  it.fails('parks an event at SQS’s largest message size (the lane attribute must not push it over)', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const old = sourceRecord('big-1', 400);
    const head = `{"specversion":"1.0","id":"big-1","source":"${SOURCE}","type":"t","data":"`;
    // The largest body the source queue takes (1 MiB, no attributes): MAX_EVENT_BYTES' default accepts it.
    old.body = `${head}${'x'.repeat(1_048_576 - head.length - 2)}"}`;
    const response = await (await pipeline({ PARK_AFTER_S: '300' })).handle(sqsEvent([old]), lambdaContext());
    // A valid event: the healthy endpoints got it; only beta's park is in question.
    expect(endpoints.alpha.received.map((request) => request.eventId)).toEqual(['big-1']);
    expect(failedIds(response)).toEqual([]);
  });

  it('leaves the record failed when the send to the lane fails (the lane queue does not exist), and says why', async () => {
    endpoints.gamma.respond(() => ({ status: 503 }));
    const old = sourceRecord('old-2', 400);
    const run = await loggingPipeline();
    const { result, lines } = await captureOutput(() => run.handle(sqsEvent([old]), lambdaContext()));
    expect(failedIds(result)).toEqual([old.messageId]);
    expect(
      lines.filter((line) => line.message === 'events not parked; their records stay failed and come back'),
    ).toEqual([
      expect.objectContaining({
        level: 'WARN',
        errors: [expect.stringMatching(new RegExp(`^${prefix}gamma: \\S+`))],
        hint: expect.stringContaining('LANE_QUEUE_URL_PREFIX'),
      }),
    ]);
    expect(lines.filter((line) => line.message === 'events parked in the endpoint lane')).toEqual([]);
  });

  it('parks one lane message for the records of one event in a batch, and says how many it parked', async () => {
    endpoints.alpha.respond(() => ({ status: 503 }));
    const first = sourceRecord('twice-1', 400);
    const second = { ...sourceRecord('twice-1', 400), messageId: `${first.messageId}-again` };
    const run = await loggingPipeline();
    const { result, lines } = await captureOutput(() => run.handle(sqsEvent([first, second]), lambdaContext()));
    expect(failedIds(result)).toEqual([]);
    await laneMessage('alpha', 'twice-1');
    expect(received.get(lanes.alpha.url)?.filter((m) => JSON.parse(m.Body!).id === 'twice-1')).toHaveLength(1);
    expect(lines.filter((line) => line.message === 'events parked in the endpoint lane')).toEqual([
      expect.objectContaining({ level: 'INFO', endpoint: 'alpha', events: 1 }),
    ]);
    expect(
      lines.filter((line) => line.message === 'events not parked; their records stay failed and come back'),
    ).toEqual([]);
  });

  it('never parks a FIFO record: the lane would let the rest of its group overtake it', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const old = sourceRecord('fifo-1', 400);
    old.attributes.MessageGroupId = 'g';
    const response = await (await pipeline()).handle(sqsEvent([old]), lambdaContext());
    expect(failedIds(response)).toEqual([old.messageId]);
    expect(
      (await receiveAll(sqs, lanes.beta.url, { visibilityTimeoutS: 0 })).filter(
        (m) => JSON.parse(m.Body!).id === 'fifo-1',
      ),
    ).toEqual([]);
  });

  it('leaves the record failed when SQS refuses the lane entry', async () => {
    // aws-sdk-client-mock: local SQS cannot refuse one entry of a SendMessageBatch (a Failed entry) on demand.
    const client = localSqs();
    const mock = mockClient(client);
    mock.on(SendMessageBatchCommand).resolves({
      Successful: [],
      Failed: [{ Id: '0', Code: 'InternalError', Message: 'try again', SenderFault: false }],
    });
    endpoints.beta.respond(() => ({ status: 503 }));
    const old = sourceRecord('old-3', 400);
    const response = await (await pipeline({}, client)).handle(sqsEvent([old]), lambdaContext());
    expect(failedIds(response)).toEqual([old.messageId]);
    mock.restore();
  });

  it('with LANE_QUEUE_URL_PREFIX unset, behaves as before: nothing parks, a lane-named batch is a source batch', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const old = sourceRecord('old-4', 4000);
    // Even with a sender wired in, the variable decides.
    const run = await pipeline({ LANE_QUEUE_URL_PREFIX: '' }, sqs, { lanes: createLaneSender(sqs, prefix) });
    expect(failedIds(await run.handle(sqsEvent([old]), lambdaContext()))).toEqual([old.messageId]);
    const lane = await laneRecord('alpha', 'lane-as-source');
    expect(failedIds(await run.handle(sqsEvent([lane]), lambdaContext()))).toEqual([lane.messageId]);
    expect(endpoints.gamma.received.map((request) => request.eventId)).toEqual(['old-4', 'lane-as-source']);
    expect(await receiveAll(sqs, lanes.beta.url, { visibilityTimeoutS: 0 })).toEqual([]);
  });
});

describe('lane path (a batch from an endpoint’s lane)', () => {
  it('sends a record that is not due back to the lane delayed and acknowledges it, without delivering', async () => {
    const record = await laneRecord('beta', 'later-1', { d: Date.now() + 1_500, a: 2 });
    const run = await loggingPipeline();
    const { result: response, lines } = await captureOutput(() => run.handle(sqsEvent([record]), lambdaContext()));
    expect(response.batchItemFailures).toEqual([]);
    expect(lines.filter((line) => line.level === 'WARN')).toEqual([]);
    expect(endpoints.beta.received).toEqual([]);
    const again = await laneMessage('beta', 'later-1');
    expect(again.Body).toBe(record.body);
    expect(envelopeOf(again)).toEqual(JSON.parse(record.messageAttributes[LANE_ATTRIBUTE]!.stringValue!));
  });

  it('keeps a not-due record failed when it cannot be sent back to the lane, and says so', async () => {
    const record = await laneRecord('gamma', 'later-2', { d: Date.now() + 60_000, f: Date.now() - 90_000 });
    const run = await loggingPipeline();
    const { result, lines } = await captureOutput(() => run.handle(sqsEvent([record]), lambdaContext()));
    expect(failedIds(result)).toEqual([record.messageId]);
    const warned = lines.filter(
      (line) => line.message === 'lane records not sent back to the lane; they come back after the visibility timeout',
    );
    expect(warned).toEqual([
      expect.objectContaining({
        level: 'WARN',
        endpoint: 'gamma',
        errors: [expect.stringContaining(`${prefix}gamma`)],
      }),
    ]);
    const batch = lines.filter((line) => line.message === 'lane batch processed');
    expect(batch).toEqual([
      expect.objectContaining({
        endpoint: 'gamma',
        records: 1,
        acknowledged: 0,
        failed: 1,
        delivered: 0,
        exhausted: 0,
      }),
    ]);
    // The envelope's first failure was 90 s ago.
    expect(batch[0]?.oldestAgeS).toBeGreaterThanOrEqual(90);
    expect(batch[0]?.oldestAgeS).toBeLessThan(900);
  });

  it('delivers a due record to its endpoint only and acknowledges it', async () => {
    const record = await laneRecord('beta', 'due-1');
    const response = await (await pipeline()).handle(sqsEvent([record]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(endpoints.beta.received.map((request) => request.body.toString())).toEqual([record.body]);
    expect(endpoints.alpha.received).toEqual([]);
    expect(endpoints.gamma.received).toEqual([]);
  });

  it('writes a lane delivery to the ledger: the same lane message again is acknowledged without a delivery', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'lanes-ledger');
    const run = await pipeline({ DELIVERY_LEDGER_TABLE: table });
    const record = await laneRecord('beta', 'due-3');
    expect((await run.handle(sqsEvent([record]), lambdaContext())).batchItemFailures).toEqual([]);
    const duplicate = { ...record, messageId: `${record.messageId}-again` };
    expect((await run.handle(sqsEvent([duplicate]), lambdaContext())).batchItemFailures).toEqual([]);
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['due-3']);
  });

  it('delivers an event parked in two lanes from each, with a ledger: one lane’s delivery is not the other’s', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'lanes-ledger');
    const run = await pipeline({ DELIVERY_LEDGER_TABLE: table });
    const forAlpha = await laneRecord('alpha', 'both-1');
    expect((await run.handle(sqsEvent([forAlpha]), lambdaContext())).batchItemFailures).toEqual([]);
    const forBeta = await laneRecord('beta', 'both-1');
    expect((await run.handle(sqsEvent([forBeta]), lambdaContext())).batchItemFailures).toEqual([]);
    expect(endpoints.alpha.received.map((request) => request.eventId)).toEqual(['both-1']);
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['both-1']);
  });

  it('quarantines a record its endpoint rejects, naming the endpoint, and acknowledges it', async () => {
    endpoints.beta.respond(() => ({ status: 422 }));
    const record = await laneRecord('beta', 'poison-1');
    const response = await (await pipeline()).handle(sqsEvent([record]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    const landed = await dlqMessage('poison-1');
    expect(readQuarantineAttributes(landed.MessageAttributes)).toMatchObject({
      reason: 'rejected-by-endpoint',
      detail: 'beta answered 422',
      endpoint: 'beta',
      status: '422',
    });
  });

  it('sends a failing record back with its next wait, and to the DLQ as retries-exhausted after the last', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const retried = await laneRecord('beta', 'retry-1', { a: 1 });
    const exhausted = await laneRecord('beta', 'exhausted-1', { a: SCHEDULE.length });
    const before = Date.now();
    const response = await (await pipeline()).handle(sqsEvent([retried, exhausted]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);

    const again = envelopeOf(await laneMessage('beta', 'retry-1'));
    expect(again.a).toBe(2);
    expect(again.d).toBeGreaterThanOrEqual(before + SCHEDULE[1]! * 1000);
    const landed = await dlqMessage('exhausted-1');
    expect(readQuarantineAttributes(landed.MessageAttributes)).toMatchObject({
      reason: 'retries-exhausted',
      detail: `beta: ${SCHEDULE.length + 1} attempts failed, the last 503`,
      endpoint: 'beta',
    });
    // The DLQ copy keeps its envelope: redrive can send it back to that lane only.
    expect(envelopeOf(landed).e).toBe('beta');
  });

  it('gives a dead-lettered event that a redrive moved back to its lane the whole schedule again', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    // The DLQ copy of an exhausted event, moved back by `npm run redrive` (to its quarantine.sourceQueue: the lane).
    const redriven = await laneRecord('beta', 'redriven-1', { a: SCHEDULE.length });
    redriven.messageAttributes['redrive.from'] = {
      dataType: 'String',
      stringValue: dlq.arn,
      stringListValues: [],
      binaryListValues: [],
    };
    const response = await (await pipeline()).handle(sqsEvent([redriven]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    // One more failure is not the end of a fresh schedule: back in the lane with its next wait, not in the DLQ.
    expect(envelopeOf(await laneMessage('beta', 'redriven-1')).a).toBe(2);
  });

  it('quarantines a lane record without a valid envelope, or with another endpoint’s, as lane-envelope-invalid', async () => {
    const malformed = await laneRecord('beta', 'bad-1');
    malformed.messageAttributes[LANE_ATTRIBUTE]!.stringValue = '{"e":"beta"}';
    // A valid envelope of alpha's in beta's lane: delivering it to beta would send alpha's event to beta.
    const stray = await laneRecord('beta', 'bad-2', { e: 'alpha' });
    const response = await (await pipeline()).handle(sqsEvent([malformed, stray]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(endpoints.beta.received).toEqual([]);
    for (const id of ['bad-1', 'bad-2']) {
      const landed = await dlqMessage(id);
      expect(readQuarantineAttributes(landed.MessageAttributes)).toMatchObject({ reason: 'lane-envelope-invalid' });
    }
  });
});

describe('lane path: a paused endpoint, a removed one, a body that is no event', () => {
  it('sends a paused endpoint’s due lane record back for the longest wait, undelivered, and acknowledges it', async () => {
    const run = await pipeline({}, sqs, { paused: (endpoint) => endpoint === 'beta' });
    const record = await laneRecord('beta', 'paused-1');
    expect((await run.handle(sqsEvent([record]), lambdaContext())).batchItemFailures).toEqual([]);
    expect(endpoints.beta.received).toEqual([]);
    // Delayed 15 minutes (SQS's longest timer): not visible in the lane now.
    expect(
      (await receiveAll(sqs, lanes.beta.url, { visibilityTimeoutS: 0 })).filter((m) => m.Body === record.body),
    ).toEqual([]);
  });

  it('parks a paused endpoint’s failure at once, whatever its age, for the lane to hold', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const run = await pipeline({}, sqs, { paused: (endpoint) => endpoint === 'beta' });
    const young = sourceRecord('paused-2', 1);
    expect(failedIds(await run.handle(sqsEvent([young]), lambdaContext()))).toEqual([]);
    expect(envelopeOf(await laneMessage('beta', 'paused-2')).e).toBe('beta');
  });

  it('quarantines the lane records of an endpoint no longer configured, saying so, and acknowledges them', async () => {
    const record = await laneRecord('beta', 'gone-1', { e: 'delta' });
    record.eventSourceARN = record.eventSourceARN.replace(/beta$/, 'delta');
    const response = await (await pipeline()).handle(sqsEvent([record]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(readQuarantineAttributes((await dlqMessage('gone-1')).MessageAttributes)).toMatchObject({
      reason: 'lane-envelope-invalid',
      detail: "endpoint 'delta' is not configured",
      endpoint: 'delta',
    });
  });

  it('quarantines a due lane record whose body is not a CloudEvent, undelivered, with the parse reason', async () => {
    const record = await laneRecord('beta', 'not-event-1');
    record.body = JSON.stringify({ id: 'not-event-1', note: 'no specversion' });
    const response = await (await pipeline()).handle(sqsEvent([record]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(endpoints.beta.received).toEqual([]);
    expect(readQuarantineAttributes((await dlqMessage('not-event-1')).MessageAttributes)).toMatchObject({
      reason: 'invalid-cloudevent',
    });
  });
});

describe('lane path without a quarantine queue', () => {
  it('keeps a rejected lane record failed: nothing confirmed it anywhere', async () => {
    endpoints.beta.respond(() => ({ status: 400 }));
    const record = await laneRecord('beta', 'poison-2');
    const response = await (await pipeline({ QUARANTINE_QUEUE_URL: '' })).handle(sqsEvent([record]), lambdaContext());
    expect(failedIds(response)).toEqual([record.messageId]);
  });
});

describe('lane metrics (EMF, per endpoint)', () => {
  const saved = process.env.POWERTOOLS_METRICS_DISABLED;
  afterEach(() => {
    process.env.POWERTOOLS_METRICS_DISABLED = saved;
  });

  it('counts parked events on the source path, and lane deliveries, exhaustion and backlog age on the lane', async () => {
    // The suite silences EMF; the per-endpoint Metrics are created with the pipeline, so enable them first.
    process.env.POWERTOOLS_METRICS_DISABLED = 'false';
    const run = await pipeline();
    endpoints.beta.respond(() => ({ status: 503 }));
    const old = sourceRecord('old-6', 400);
    const source = await captureOutput(() => run.handle(sqsEvent([old]), lambdaContext()));
    expect(source.result.batchItemFailures).toEqual([]);
    expect(source.lines.find((line) => line.endpoint === 'beta' && 'EventsParked' in line)).toMatchObject({
      EventsParked: 1,
    });

    endpoints.beta.respond((request) => ({ status: request.eventId === 'due-2' ? 200 : 503 }));
    const due = await laneRecord('beta', 'due-2', { f: Date.now() - 120_000 });
    const spent = await laneRecord('beta', 'exhausted-2', { a: SCHEDULE.length });
    const lane = await captureOutput(() => run.handle(sqsEvent([due, spent]), lambdaContext()));
    expect(lane.result.batchItemFailures).toEqual([]);
    const emf = lane.lines.find((line) => line.endpoint === 'beta' && 'LaneDelivered' in line);
    expect(emf).toMatchObject({ LaneDelivered: 1, RetriesExhausted: 1 });
    // The oldest envelope's first failure was 120 s before the batch: its age in seconds, not in ms or since 1970.
    expect(emf?.LaneBacklogAgeS).toBeGreaterThanOrEqual(120);
    expect(emf?.LaneBacklogAgeS).toBeLessThan(1_200);
  });
});
