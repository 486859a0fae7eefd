import { CreateQueueCommand, type Message, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createIngest, type Ingest, type IngestDeps, idempotencyKey, loadConfig } from '../../lib/index';
import { createEdges } from '../../lib/ingest/edges';
import {
  createLaneSender,
  encodeEnvelope,
  LANE_ATTRIBUTE,
  LANE_BODY_ATTRIBUTE,
  type LaneEnvelope,
  type LaneSender,
  unpackLaneBody,
} from '../../lib/lanes';
import { readQuarantineAttributes } from '../../lib/settle/quarantine';
import {
  createLedgerTable,
  createQueue,
  type LocalQueue,
  localDynamoDb,
  localSqs,
  pollUntil,
  receiveAll,
  toLambdaRecord,
  uniqueName,
} from '../support/aws';
import { TestEndpoint } from '../support/endpoints';
import { eventRecord, lambdaContext, sqsEvent } from '../support/events';
import { laneRecord } from '../support/lanes';
import { captureLogs } from '../support/logs';
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
  extra: Pick<IngestDeps, 'logger' | 'metrics' | 'paused'> & {
    lanes?: LaneSender;
    fields?: Partial<Record<Name, Record<string, unknown>>>;
  } = {},
): Promise<Ingest> {
  const { fields, ...deps } = extra;
  const document = {
    endpoints: NAMES.map((name) => ({ name, url: endpoints[name].url, retrySchedule: SCHEDULE, ...fields?.[name] })),
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
    ...deps,
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

/** A message as it sits in `endpoint`'s lane of this file's stage. */
const laneRecordOf = (endpoint: Name, id: string, envelope: Partial<LaneEnvelope> = {}) =>
  laneRecord(`${prefixName}${endpoint}`, endpoint, id, envelope);

const failedIds = (response: SQSBatchResponse) => response.batchItemFailures.map((item) => item.itemIdentifier).sort();

/** A source record SQS first handed out `ageS` seconds ago. */
function sourceRecord(id: string, ageS: number): SQSRecord {
  const record = eventRecord(id);
  record.attributes.ApproximateFirstReceiveTimestamp = String(Date.now() - ageS * 1000);
  return record;
}

/** A lane's dead-lettered copy of event `eventId` as `npm run redrive -- --to <source queue>` puts it there. */
function redrivenToSource(eventId: string, laneCopy: Message): SQSRecord {
  const record = sourceRecord(eventId, 0);
  record.messageAttributes = {
    'redrive.from': { dataType: 'String', stringValue: dlq.arn, stringListValues: [], binaryListValues: [] },
    [LANE_ATTRIBUTE]: {
      dataType: 'String',
      stringValue: laneCopy.MessageAttributes![LANE_ATTRIBUTE]!.StringValue!,
      stringListValues: [],
      binaryListValues: [],
    },
  };
  return record;
}

function envelopeOf(message: Message): LaneEnvelope {
  return JSON.parse(message.MessageAttributes?.[LANE_ATTRIBUTE]?.StringValue ?? 'null');
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

  // Review of issue 16: the lane message carried only `ingest.lane`; the design has the producer's attributes travel.
  it('carries the producer’s message attributes into the lane and on every hop back to it', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const old = sourceRecord('attrs-1', 400);
    old.messageAttributes = {
      tenant: { dataType: 'String', stringValue: 'acme', stringListValues: [], binaryListValues: [] },
      blob: {
        dataType: 'Binary',
        binaryValue: Buffer.from([0, 1, 2]).toString('base64'),
        stringListValues: [],
        binaryListValues: [],
      },
    };
    const run = await pipeline();
    expect(failedIds(await run.handle(sqsEvent([old]), lambdaContext()))).toEqual([]);
    const parked = await laneMessage('beta', 'attrs-1');
    const producers = (message: Message) =>
      Object.fromEntries(
        Object.entries(message.MessageAttributes ?? {})
          .filter(([name]) => name !== LANE_ATTRIBUTE)
          .map(([name, value]) => [name, value.StringValue ?? Buffer.from(value.BinaryValue!).toString('hex')]),
      );
    expect(producers(parked)).toEqual({ tenant: 'acme', blob: '000102' });
    // Not due yet: sent back to the lane, attributes and all.
    const hop = toLambdaRecord(parked, lanes.beta.arn);
    hop.messageAttributes[LANE_ATTRIBUTE]!.stringValue = encodeEnvelope({
      ...envelopeOf(parked),
      d: Date.now() + 1_000,
    });
    expect((await run.handle(sqsEvent([hop]), lambdaContext())).batchItemFailures).toEqual([]);
    const seen = received.get(lanes.beta.url)!.length;
    const again = await pollUntil('attrs-1 back in the beta lane', async () => {
      received.get(lanes.beta.url)!.push(...(await receiveAll(sqs, lanes.beta.url, { visibilityTimeoutS: 300 })));
      return received
        .get(lanes.beta.url)!
        .slice(seen)
        .find((message) => envelopeOf(message).k === envelopeOf(parked).k);
    });
    expect(producers(again)).toEqual({ tenant: 'acme', blob: '000102' });
  });

  // Hostile review (rev10): two records of one event share one lane message; the line named only the first record,
  // so the event history found nothing for the other, acknowledged all the same.
  it('names every record of a parked event in the parked line, duplicates included', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const { logger, metrics, lines } = captureLogs();
    const first = sourceRecord('twice-1', 400);
    const again = { ...first, messageId: `${first.messageId}-again` };
    const response = await (await pipeline({}, sqs, { logger, metrics })).handle(
      sqsEvent([first, again]),
      lambdaContext(),
    );
    expect(response.batchItemFailures).toEqual([]);
    const parked = lines.filter((line) => line.message === 'events parked in the endpoint lane');
    expect(parked).toHaveLength(1);
    expect(parked[0]).toMatchObject({ endpoint: 'beta', events: 1, eventIds: 'twice-1' });
    expect(String(parked[0]!.messageIds).split(',')).toEqual([first.messageId, again.messageId]);
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
    const due = laneRecordOf('beta', 'old-7', { ...parked, d: Date.now() });
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
    const redriven = redrivenToSource('old-8', parked);
    expect(failedIds(await run.handle(sqsEvent([redriven]), lambdaContext()))).toEqual([]);
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['old-8', 'old-8']);
  });

  // Hostile review (rev9): the lane copy went to every routed endpoint the ledger did not name; in the default ledger
  // mode a record acknowledged at once leaves no entry, so a DLQ of lane copies redriven to the source was a storm.
  it('delivers a lane’s copy redriven to the source queue to its endpoint only, not again to the others', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const run = await pipeline();
    const old = sourceRecord('old-9', 400);
    expect(failedIds(await run.handle(sqsEvent([old]), lambdaContext()))).toEqual([]);
    const parked = await laneMessage('beta', 'old-9');
    endpoints.beta.respond(() => ({ status: 200 }));
    const redriven = redrivenToSource('old-9', parked);
    expect(failedIds(await run.handle(sqsEvent([redriven]), lambdaContext()))).toEqual([]);
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['old-9', 'old-9']);
    expect(endpoints.alpha.received.map((request) => request.eventId)).toEqual(['old-9']);
    expect(endpoints.gamma.received.map((request) => request.eventId)).toEqual(['old-9']);
  });

  // Producers can set any attribute: only a copy a redrive moved (its marker) is taken as owed to its lane's endpoint.
  it('delivers a source record carrying a producer-set ingest.lane to every endpoint it is routed to', async () => {
    const run = await pipeline();
    const record = sourceRecord('spoof-1', 0);
    record.messageAttributes = {
      [LANE_ATTRIBUTE]: {
        dataType: 'String',
        stringValue: encodeEnvelope({ e: 'beta', k: idempotencyKey(SOURCE, 'spoof-1'), f: 1, a: 1, d: 1 }),
        stringListValues: [],
        binaryListValues: [],
      },
    };
    expect(failedIds(await run.handle(sqsEvent([record]), lambdaContext()))).toEqual([]);
    for (const name of NAMES) expect(endpoints[name].received.map((request) => request.eventId)).toEqual(['spoof-1']);
  });

  // Review of issue 16: body + the `ingest.lane` attribute passed SQS's 1 MiB, so the send was refused on every
  // receive and the record stayed on today's path (backoff, then the DLQ).
  /** Parks event `eventId` at SQS's largest message size in beta's lane (beta down); the lane's message as received. */
  async function parkLargest(eventId: string) {
    endpoints.beta.respond(() => ({ status: 503 }));
    const old = sourceRecord(eventId, 400);
    const head = `{"specversion":"1.0","id":"${eventId}","source":"${SOURCE}","type":"t","data":"`;
    // The largest body the source queue takes (1 MiB, no attributes): MAX_EVENT_BYTES' default accepts it.
    old.body = `${head}${'x'.repeat(1_048_576 - head.length - 2)}"}`;
    const run = await pipeline({ PARK_AFTER_S: '300' });
    const response = await run.handle(sqsEvent([old]), lambdaContext());
    // A valid event: the healthy endpoints got it; only beta's park is in question.
    expect(endpoints.alpha.received.map((request) => request.eventId)).toEqual([eventId]);
    expect(failedIds(response)).toEqual([]);
    const key = idempotencyKey(SOURCE, eventId);
    const parked = await pollUntil(`${eventId} in the beta lane`, async () => {
      const messages = await receiveAll(sqs, lanes.beta.url, { visibilityTimeoutS: 300 });
      received.set(lanes.beta.url, [...(received.get(lanes.beta.url) ?? []), ...messages]);
      return received.get(lanes.beta.url)!.find((message) => envelopeOf(message).k === key);
    });
    const due = toLambdaRecord(parked, lanes.beta.arn);
    due.messageAttributes[LANE_ATTRIBUTE]!.stringValue = encodeEnvelope({ ...envelopeOf(parked), d: Date.now() });
    return { old, run, due };
  }

  it('parks an event at SQS’s largest message size (the lane attribute must not push it over)', async () => {
    const { old, run, due } = await parkLargest('big-1');
    // Served from the lane once beta is back, beta gets the producer's body byte for byte.
    endpoints.beta.respond(() => ({ status: 200 }));
    expect((await run.handle(sqsEvent([due]), lambdaContext())).batchItemFailures).toEqual([]);
    // The first is the source path's refused attempt, the second the lane's delivery.
    expect(endpoints.beta.received.map((request) => request.body.toString() === old.body)).toEqual([true, true]);
  });

  // Hostile review (rev9): the lane quarantined the unpacked body, which with its attributes passed SQS's 1 MiB: SQS
  // refused it, and the record came back every visibility timeout (the endpoint sent the poison again) until SQS
  // dead-lettered it after 10 receives, without a reason.
  it('quarantines a gzip-parked event its endpoint rejects, still packed, and acknowledges it', async () => {
    const { old, run, due } = await parkLargest('big-2');
    endpoints.beta.respond(() => ({ status: 422 }));
    expect((await run.handle(sqsEvent([due]), lambdaContext())).batchItemFailures).toEqual([]);
    const landed = await pollUntil('big-2 in the DLQ', async () => {
      const seen = received.get(dlq.url) ?? [];
      received.set(dlq.url, [...seen, ...(await receiveAll(sqs, dlq.url, { visibilityTimeoutS: 300 }))]);
      return received.get(dlq.url)!.find((message) => message.MessageAttributes?.[LANE_BODY_ATTRIBUTE]);
    });
    expect(readQuarantineAttributes(landed.MessageAttributes)).toMatchObject({ reason: 'rejected-by-endpoint' });
    // Redriven to the lane, the function reads the producer's body again.
    expect(unpackLaneBody(toLambdaRecord(landed, lanes.beta.arn)).body).toBe(old.body);
  });

  // Review of issue 16: the park ran under the delivery deadline's signal, so in exactly the batches an endpoint held
  // until that deadline fired, every lane send was aborted before it left: nothing parked, the records came back.
  it('parks after the delivery deadline fired, within the settle reserve (as the lane path sends)', async () => {
    endpoints.beta.respond(() => ({ hang: true }));
    const old = sourceRecord('late-1', 400);
    const run = await pipeline({ DEADLINE_MARGIN_MS: '3000' });
    // Deliveries stop at 2 s (5 s − the margin); settling may run until 3.5 s (half the margin is the reserve).
    const response = await run.handle(sqsEvent([old]), lambdaContext(5_000));
    expect(failedIds(response)).toEqual([]);
    expect(envelopeOf(await laneMessage('beta', 'late-1')).e).toBe('beta');
    expect(endpoints.alpha.received.map((request) => request.eventId)).toEqual(['late-1']);
  });

  it('parks a record whose delivery the deadline cut (an endpoint that hangs): the park runs in the side effects’ time', async () => {
    // Found by the fuzz (L3): parked under the delivery deadline, already aborted, such a record never parked.
    endpoints.beta.respond(() => ({ hang: true }));
    const old = sourceRecord('hung-1', 400);
    const run = await pipeline({ DELIVERY_TIMEOUT_MS: '30000', DEADLINE_MARGIN_MS: '1000' });
    const response = await run.handle(sqsEvent([old]), lambdaContext(1_500));
    expect(failedIds(response)).toEqual([]);
    expect(envelopeOf(await laneMessage('beta', 'hung-1'))).toMatchObject({ e: 'beta', a: 1 });
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
    const lane = laneRecordOf('alpha', 'lane-as-source');
    // Without its envelope: a lane batch would quarantine it, a source batch delivers it to every endpoint (an
    // envelope would make it a lane's copy, owed to alpha only).
    lane.messageAttributes = {};
    expect(failedIds(await run.handle(sqsEvent([lane]), lambdaContext()))).toEqual([lane.messageId]);
    expect(endpoints.gamma.received.map((request) => request.eventId)).toEqual(['old-4', 'lane-as-source']);
    expect(await receiveAll(sqs, lanes.beta.url, { visibilityTimeoutS: 0 })).toEqual([]);
  });
});

describe('lane path (a batch from an endpoint’s lane)', () => {
  it('sends a record that is not due back to the lane delayed and acknowledges it, without delivering', async () => {
    const record = laneRecordOf('beta', 'later-1', { d: Date.now() + 1_500, a: 2 });
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
    const record = laneRecordOf('gamma', 'later-2', { d: Date.now() + 60_000, f: Date.now() - 90_000 });
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
    const record = laneRecordOf('beta', 'due-1');
    const response = await (await pipeline()).handle(sqsEvent([record]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(endpoints.beta.received.map((request) => request.body.toString())).toEqual([record.body]);
    expect(endpoints.alpha.received).toEqual([]);
    expect(endpoints.gamma.received).toEqual([]);
  });

  // Hostile review (rev10): an event its endpoint's filter no longer matches (acknowledged, nothing sent) was listed
  // in the batch line's deliveredEventIds, so the event history said the lane had delivered it.
  it('acknowledges a record its endpoint’s filter no longer matches, without logging it as delivered', async () => {
    const { logger, metrics, lines } = captureLogs();
    const fields = { beta: { filter: { type: 'com.example.order.shipped' } } };
    const run = await pipeline({}, sqs, { logger, metrics, fields });
    const record = laneRecordOf('beta', 'unrouted-1');
    expect((await run.handle(sqsEvent([record]), lambdaContext())).batchItemFailures).toEqual([]);
    expect(endpoints.beta.received).toEqual([]);
    const summary = lines.find((line) => line.message === 'lane batch processed');
    expect(summary).toMatchObject({ endpoint: 'beta', delivered: 0 });
    // The logger drops an empty field: none delivered, no deliveredEventIds.
    expect(summary).not.toHaveProperty('deliveredEventIds');
    // Its own line, which the event history finds by eventIds.
    expect(
      lines.find((line) => line.message === 'lane records no longer routed to their endpoint; acknowledged'),
    ).toMatchObject({ endpoint: 'beta', eventIds: 'unrouted-1' });
  });

  it('writes a lane delivery to the ledger: the same lane message again is acknowledged without a delivery', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'lanes-ledger');
    const run = await pipeline({ DELIVERY_LEDGER_TABLE: table });
    const record = laneRecordOf('beta', 'due-3');
    expect((await run.handle(sqsEvent([record]), lambdaContext())).batchItemFailures).toEqual([]);
    const duplicate = { ...record, messageId: `${record.messageId}-again` };
    expect((await run.handle(sqsEvent([duplicate]), lambdaContext())).batchItemFailures).toEqual([]);
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['due-3']);
  });

  // Hostile review (rev9): the ledger was asked about the envelope's key, not the event's: an envelope whose `k` named
  // an event the lane had delivered acknowledged this one, never delivered.
  it('quarantines a lane record whose envelope key is not its event’s, rather than trust the ledger with it', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'lanes-ledger');
    const run = await pipeline({ DELIVERY_LEDGER_TABLE: table });
    const first = laneRecordOf('beta', 'keyed-1');
    expect((await run.handle(sqsEvent([first]), lambdaContext())).batchItemFailures).toEqual([]);
    const other = laneRecordOf('beta', 'keyed-2', { k: idempotencyKey(SOURCE, 'keyed-1') });
    expect((await run.handle(sqsEvent([other]), lambdaContext())).batchItemFailures).toEqual([]);
    const landed = await dlqMessage('keyed-2');
    expect(readQuarantineAttributes(landed.MessageAttributes)).toMatchObject({ reason: 'lane-envelope-invalid' });
  });

  it('delivers an event parked in two lanes from each, with a ledger: one lane’s delivery is not the other’s', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'lanes-ledger');
    const run = await pipeline({ DELIVERY_LEDGER_TABLE: table });
    const forAlpha = laneRecordOf('alpha', 'both-1');
    expect((await run.handle(sqsEvent([forAlpha]), lambdaContext())).batchItemFailures).toEqual([]);
    const forBeta = laneRecordOf('beta', 'both-1');
    expect((await run.handle(sqsEvent([forBeta]), lambdaContext())).batchItemFailures).toEqual([]);
    expect(endpoints.alpha.received.map((request) => request.eventId)).toEqual(['both-1']);
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['both-1']);
  });

  it('quarantines a record its endpoint rejects, naming the endpoint, and acknowledges it', async () => {
    endpoints.beta.respond(() => ({ status: 422 }));
    const record = laneRecordOf('beta', 'poison-1');
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
    const retried = laneRecordOf('beta', 'retry-1', { a: 1 });
    const exhausted = laneRecordOf('beta', 'exhausted-1', { a: SCHEDULE.length });
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

  // Review of issue 16: a delivery the open breaker refused (never sent) counted as an attempt, so a lane's records
  // ran through their schedule to the DLQ while the breaker held, without the endpoint being tried.
  it('does not count a delivery its open breaker refused as an attempt: same attempt, same wait again', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const run = await pipeline({ CIRCUIT_BREAKER_THRESHOLD: '1', CIRCUIT_BREAKER_HALF_OPEN_MS: '900000' });
    const opens = laneRecordOf('beta', 'opens-1', { a: 1 });
    expect((await run.handle(sqsEvent([opens]), lambdaContext())).batchItemFailures).toEqual([]);
    const refused = laneRecordOf('beta', 'refused-1', { a: SCHEDULE.length });
    const before = Date.now();
    expect((await run.handle(sqsEvent([refused]), lambdaContext())).batchItemFailures).toEqual([]);
    expect(endpoints.beta.received.map((request) => request.eventId)).toEqual(['opens-1']);
    // Not dead-lettered as retries-exhausted: back in the lane with its attempts unchanged.
    const again = envelopeOf(await laneMessage('beta', 'refused-1'));
    expect(again.a).toBe(SCHEDULE.length);
    expect(again.d).toBeGreaterThanOrEqual(before + SCHEDULE[SCHEDULE.length - 1]! * 1000);
  });

  // Hostile review (rev9): a record still waiting for a rate-limit token at the deadline stayed failed, so a slow
  // endpoint's backlog went round the visibility timeout until SQS dead-lettered it (10 receives), never sent.
  it('sends a record the rate limit held past the deadline back to the lane, same attempt, and acknowledges it', async () => {
    const run = await pipeline({ DEADLINE_MARGIN_MS: '1000' }, sqs, {
      fields: { beta: { rateLimitPerSecond: 0.001 } },
    });
    const first = laneRecordOf('beta', 'slow-1', { a: 2 });
    const second = laneRecordOf('beta', 'slow-2', { a: 2 });
    // One token: one of the two goes, the other waits for the next until the deadline (2 s − the margin).
    const response = await run.handle(sqsEvent([first, second]), lambdaContext(2_000));
    expect(response.batchItemFailures).toEqual([]);
    expect(endpoints.beta.received).toHaveLength(1);
    const held = endpoints.beta.received[0]!.eventId === 'slow-1' ? 'slow-2' : 'slow-1';
    expect(envelopeOf(await laneMessage('beta', held))).toMatchObject({ e: 'beta', a: 2 });
  });

  it('gives a dead-lettered event that a redrive moved back to its lane the whole schedule again', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    // The DLQ copy of an exhausted event, moved back by `npm run redrive` (to its quarantine.sourceQueue: the lane).
    const redriven = laneRecordOf('beta', 'redriven-1', { a: SCHEDULE.length });
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
    const malformed = laneRecordOf('beta', 'bad-1');
    malformed.messageAttributes[LANE_ATTRIBUTE]!.stringValue = '{"e":"beta"}';
    // A valid envelope of alpha's in beta's lane: delivering it to beta would send alpha's event to beta.
    const stray = laneRecordOf('beta', 'bad-2', { e: 'alpha' });
    // Hostile review (rev9): due in 10 years, it was sent back every 15 min for ever (each hop renews its retention).
    const never = laneRecordOf('beta', 'bad-3', { d: Date.now() + 10 * 365 * 86_400_000 });
    const response = await (await pipeline()).handle(sqsEvent([malformed, stray, never]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(endpoints.beta.received).toEqual([]);
    for (const id of ['bad-1', 'bad-2', 'bad-3']) {
      const landed = await dlqMessage(id);
      expect(readQuarantineAttributes(landed.MessageAttributes)).toMatchObject({ reason: 'lane-envelope-invalid' });
    }
  });
});

/** The pause reader's shape (lib/lanes/pause.ts) with one endpoint paused: the tests of the tag itself are in pause.test.ts. */
const pausedOnly =
  (name: string): NonNullable<IngestDeps['paused']> =>
  async (names) => ({ paused: new Set(names.filter((n) => n === name)), errors: [] });

describe('lane path: a paused endpoint, a removed one, a body that is no event', () => {
  it('sends a paused endpoint’s due lane record back for a wait, undelivered, and acknowledges it', async () => {
    const run = await pipeline({}, sqs, { paused: pausedOnly('beta') });
    const record = laneRecordOf('beta', 'paused-1');
    expect((await run.handle(sqsEvent([record]), lambdaContext())).batchItemFailures).toEqual([]);
    expect(endpoints.beta.received).toEqual([]);
    // Delayed (a paused lane's wait): not visible in the lane now.
    expect(
      (await receiveAll(sqs, lanes.beta.url, { visibilityTimeoutS: 0 })).filter((m) => m.Body === record.body),
    ).toEqual([]);
  });

  it('parks a paused endpoint’s failure at once, whatever its age, for the lane to hold', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    const run = await pipeline({}, sqs, { paused: pausedOnly('beta') });
    const young = sourceRecord('paused-2', 1);
    expect(failedIds(await run.handle(sqsEvent([young]), lambdaContext()))).toEqual([]);
    expect(envelopeOf(await laneMessage('beta', 'paused-2')).e).toBe('beta');
  });

  it('quarantines the lane records of an endpoint no longer configured, saying so, and acknowledges them', async () => {
    const record = laneRecordOf('beta', 'gone-1', { e: 'delta' });
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
    const record = laneRecordOf('beta', 'not-event-1');
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
    const record = laneRecordOf('beta', 'poison-2');
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
    const due = laneRecordOf('beta', 'due-2', { f: Date.now() - 120_000 });
    const spent = laneRecordOf('beta', 'exhausted-2', { a: SCHEDULE.length });
    const lane = await captureOutput(() => run.handle(sqsEvent([due, spent]), lambdaContext()));
    expect(lane.result.batchItemFailures).toEqual([]);
    const emf = lane.lines.find((line) => line.endpoint === 'beta' && 'LaneDelivered' in line);
    expect(emf).toMatchObject({ LaneDelivered: 1, RetriesExhausted: 1 });
    // The oldest envelope's first failure was 120 s before the batch: its age in seconds, not in ms or since 1970.
    expect(emf?.LaneBacklogAgeS).toBeGreaterThanOrEqual(120);
    expect(emf?.LaneBacklogAgeS).toBeLessThan(1_200);
  });
});
