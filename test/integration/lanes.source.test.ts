import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { GetItemCommand, PutItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import {
  type ChangeMessageVisibilityBatchRequestEntry,
  CreateQueueCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createIngest, type Ingest, type IngestDeps, idempotencyKey, loadConfig } from '../../lib/index';
import { createEdges } from '../../lib/ingest/edges';
import { LANE_ATTRIBUTE } from '../../lib/lanes';
import { REDRIVE_MARKER } from '../../lib/redrive/marker';
import { COMPLETED, ledgerId } from '../../lib/settle/ledger';
import {
  createLedgerTable,
  createQueue,
  localDynamoDb,
  localSqs,
  pollUntil,
  receiveAll,
  receiveAsRecords,
  uniqueName,
} from '../support/aws';
import { TestEndpoint } from '../support/endpoints';
import { cloudEvent, lambdaContext, sqsEvent } from '../support/events';
import { laneRecord } from '../support/lanes';
import { captureOutput } from '../support/output';

// The source path's park step (lib/lanes/source.ts) as an operator sees it: the backoff of what stays failed, the
// batch's line and metrics, the park's lines and warning, the ledger. alpha and beta have lanes; gamma's does not exist.
const NAMES = ['alpha', 'beta', 'gamma'] as const;
type Name = (typeof NAMES)[number];
const ROUTED_TO_BETA_ONLY = 'com.example.order.refunded';
const NOT_TO_BETA = 'com.example.order.shipped';
const SOURCE = 'urn:test:orders';

let sqs: SQSClient;
let endpoints: Record<Name, TestEndpoint>;
let prefix: string;
let betaLane: string;
let ingest: Ingest | undefined;
/** The ChangeMessageVisibilityBatch entries the backoff sent to local SQS, as sent. */
const visibility: ChangeMessageVisibilityBatchRequestEntry[] = [];
const savedMetrics = process.env.POWERTOOLS_METRICS_DISABLED;

beforeAll(async () => {
  sqs = localSqs();
  // Reads each ChangeMessageVisibilityBatch request on its way to local SQS, which has no call to read a visibility.
  sqs.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'ChangeMessageVisibilityBatchCommand') {
        visibility.push(...((args.input as { Entries?: ChangeMessageVisibilityBatchRequestEntry[] }).Entries ?? []));
      }
      return next(args);
    },
    { step: 'initialize' },
  );
  const started = await Promise.all(NAMES.map(() => TestEndpoint.start()));
  endpoints = { alpha: started[0]!, beta: started[1]!, gamma: started[2]! };
  const stage = `${uniqueName('park')}-lane-`;
  const [alpha, beta] = await Promise.all(
    ['alpha', 'beta'].map(async (name) => {
      const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: `${stage}${name}` }));
      return QueueUrl!;
    }),
  );
  prefix = alpha!.slice(0, -'alpha'.length);
  betaLane = beta!;
});

afterAll(async () => {
  await Promise.all(Object.values(endpoints).map((endpoint) => endpoint.close()));
  sqs.destroy();
});

afterEach(async () => {
  process.env.POWERTOOLS_METRICS_DISABLED = savedMetrics;
  await ingest?.close();
  ingest = undefined;
  visibility.length = 0;
  for (const endpoint of Object.values(endpoints)) endpoint.reset();
});

/**
 * The pipeline with lanes and the backoff on local SQS, its log lines and EMF metrics written (the suite silences
 * both). Every endpoint takes `created` events; only beta `ROUTED_TO_BETA_ONLY`, all but beta `NOT_TO_BETA`.
 */
async function pipeline(env: Record<string, string>, paused: readonly Name[] = []) {
  process.env.POWERTOOLS_METRICS_DISABLED = 'false';
  const logger = new Logger({ serviceName: 'ingest-test', logLevel: 'INFO' });
  const metrics = new Metrics({ serviceName: 'ingest-test', namespace: 'IngestTest' });
  const types = (...more: string[]) => ({ filter: { type: ['com.example.order.created', ...more] } });
  const document = {
    endpoints: NAMES.map((name) => ({
      name,
      url: endpoints[name].url,
      retrySchedule: [1, 2],
      ...(name === 'beta' ? types(ROUTED_TO_BETA_ONLY) : types(NOT_TO_BETA)),
    })),
  };
  const config = loadConfig(
    { DELIVERY_MAX_ATTEMPTS: '1', LANE_QUEUE_URL_PREFIX: prefix, RETRY_BASE_DELAY_S: '1', ...env },
    { document, source: 'park.yml' },
  );
  const { backoff, lanes, ledger } = await createEdges(config, { sqs, dynamodb: localDynamoDb() });
  const pausedOnes: NonNullable<IngestDeps['paused']> = async (names) => ({
    paused: new Set(names.filter((name) => paused.includes(name as Name))),
    errors: [],
  });
  ingest = createIngest(config, { logger, metrics, backoff, lanes, paused: pausedOnes, ...(ledger ? { ledger } : {}) });
  return { ingest, metrics };
}

/**
 * Events received from a new source queue as Lambda hands them over, first received `ageS` seconds ago. A queue of
 * their own: a record backed off for 1 s would otherwise come back into the next test's batch.
 */
async function fromSource(ageS: number, ...events: Record<string, unknown>[]) {
  const source = await createQueue(sqs, 'park-source');
  const records = await receiveAsRecords(
    sqs,
    source,
    events.map((event) => ({ body: JSON.stringify(event) })),
  );
  for (const record of records) {
    record.attributes.ApproximateFirstReceiveTimestamp = String(Date.now() - ageS * 1000);
  }
  return records;
}

const eventIdOf = (record: SQSRecord) => JSON.parse(record.body).id as string;
const failedIds = (response: SQSBatchResponse) => response.batchItemFailures.map((item) => item.itemIdentifier).sort();

/** Messages received from beta's lane so far: they stay hidden for the rest of the file, so look-ups search here. */
const inBetaLane: Message[] = [];
async function betaLaneMessage(eventId: string): Promise<Message> {
  return pollUntil(`event ${eventId} in the beta lane`, async () => {
    inBetaLane.push(...(await receiveAll(sqs, betaLane, { visibilityTimeoutS: 300 })));
    return inBetaLane.find((message) => JSON.parse(message.Body!).id === eventId);
  });
}

/** Handles one batch, publishing its metrics as the handler's middleware does; what it wrote, parsed. */
async function handle(run: Awaited<ReturnType<typeof pipeline>>, records: SQSRecord[]) {
  const { result, lines } = await captureOutput(async () => {
    const response = await run.ingest.handle(sqsEvent(records), lambdaContext());
    run.metrics.publishStoredMetrics();
    return response;
  });
  const logged = (message: string) => lines.filter((line) => line.message === message);
  const emf = (metric: string, endpoint?: string) =>
    lines.find((line) => '_aws' in line && metric in line && line.endpoint === endpoint);
  return { failed: failedIds(result), lines, logged, emf };
}

describe('source path: what stays failed beside a parked endpoint is backed off as before', () => {
  it('hides the record for the longest Retry-After of the endpoints left failing while a paused one parks', async () => {
    endpoints.alpha.respond(() => ({ status: 503, headers: { 'retry-after': '30' } }));
    endpoints.gamma.respond(() => ({ status: 503, headers: { 'retry-after': '120' } }));
    const run = await pipeline({}, ['beta']);
    // Young: beta parks because it is paused; alpha and gamma are not parked yet.
    const [record] = await fromSource(5, cloudEvent('ra-1'));
    const { failed, logged } = await handle(run, [record!]);
    expect(failed).toEqual([record!.messageId]);
    await betaLaneMessage('ra-1');
    // The longer of the two Retry-Afters, not the backoff's 1 s: the endpoint asked for it.
    expect(visibility).toEqual([{ Id: '0', ReceiptHandle: record!.receiptHandle, VisibilityTimeout: 120 }]);
    // One line per endpoint still failing; beta, parked, is not one.
    expect(logged('delivery failed').map((line) => line.endpoint)).toEqual(['alpha', 'gamma']);
  });

  it('does not hold the record back for the Retry-After of the endpoint that parked', async () => {
    endpoints.beta.respond(() => ({ status: 503, headers: { 'retry-after': '600' } }));
    endpoints.gamma.respond(() => ({ status: 503 }));
    const run = await pipeline({ PARK_AFTER_S: '300' });
    // Old: beta and gamma are due to park; gamma has no lane queue, so it stays failed with no Retry-After.
    const [record] = await fromSource(400, cloudEvent('ra-2'));
    const { failed } = await handle(run, [record!]);
    expect(failed).toEqual([record!.messageId]);
    await betaLaneMessage('ra-2');
    // The first receive's backoff (RETRY_BASE_DELAY_S = 1): gamma is retried soon, whatever beta asked for.
    expect(visibility).toEqual([{ Id: '0', ReceiptHandle: record!.receiptHandle, VisibilityTimeout: 1 }]);
  });
});

describe('source path: the batch’s line and metrics with parked events', () => {
  it('counts an event parked for its only endpoint as routed, beside events delivered without a park', async () => {
    const run = await pipeline({}, ['beta']);
    const records = await fromSource(
      5,
      cloudEvent('only-beta-1', { type: ROUTED_TO_BETA_ONLY }),
      cloudEvent('not-beta-1', { type: NOT_TO_BETA }),
      cloudEvent('not-beta-2', { type: NOT_TO_BETA }),
    );
    const { failed, lines, logged, emf } = await handle(run, records);
    expect(failed).toEqual([]);
    expect(await betaLaneMessage('only-beta-1')).toBeDefined();
    // Held by its endpoint's lane: routed, not an event no endpoint wanted.
    expect(logged('batch processed')).toEqual([
      expect.objectContaining({ records: 3, acknowledged: 3, routed: 3, unrouted: 0 }),
    ]);
    expect(logged('records routed to no endpoint; acknowledged')).toEqual([]);
    expect(emf('RecordsRouted')).toMatchObject({ RecordsRouted: 3, RecordsUnrouted: 0, RecordsAcknowledged: 3 });
    expect(emf('EventsParked', 'beta')).toMatchObject({ EventsParked: 1, DeliverySucceeded: 0, DeliveryFailed: 0 });
    for (const name of ['alpha', 'gamma']) {
      expect(emf('DeliverySucceeded', name)).toMatchObject({ DeliverySucceeded: 2, DeliveryFailed: 0 });
    }
    // Only beta's event went to a lane: the delivered ones park nothing, so nothing failed to park.
    expect(lines.filter((line) => line.level === 'WARN')).toEqual([]);
    expect(logged('events parked in the endpoint lane')).toEqual([
      expect.objectContaining({ endpoint: 'beta', events: 1, eventIds: 'only-beta-1' }),
    ]);
  });

  it('lists every parked event in lines of 50 ids and names at most 5 failed lane sends in one warning', async () => {
    endpoints.beta.respond(() => ({ status: 503 }));
    endpoints.gamma.respond(() => ({ status: 503 }));
    const run = await pipeline({ PARK_AFTER_S: '300' });
    // 51 old events: beta's lane takes them all; gamma's does not exist, so its 6 sends of up to 10 are each refused.
    const ids = Array.from({ length: 51 }, (_, i) => `many-${i}`);
    const records = await fromSource(400, ...ids.map((id) => cloudEvent(id)));
    const { failed, logged, emf } = await handle(run, records);
    expect(failed).toEqual(records.map((record) => record.messageId).sort());
    expect(emf('EventsParked', 'beta')).toMatchObject({ EventsParked: 51 });
    // The event history finds each parked event by its id: two lines, 50 ids then 1, each counting all 51.
    const parked = logged('events parked in the endpoint lane');
    expect(parked).toEqual([
      expect.objectContaining({ endpoint: 'beta', events: 51 }),
      expect.objectContaining({ endpoint: 'beta', events: 51 }),
    ]);
    expect(parked.flatMap((line) => String(line.eventIds).split(','))).toEqual(records.map(eventIdOf));
    expect(parked.map((line) => String(line.messageIds).split(','))).toEqual([
      records.slice(0, 50).map((record) => record.messageId),
      [records[50]!.messageId],
    ]);
    const warned = logged('events not parked; their records stay failed and come back');
    expect(warned).toEqual([expect.objectContaining({ level: 'WARN', hint: expect.stringContaining('lane queue') })]);
    expect(warned[0]!.errors).toEqual(
      Array(5).fill(expect.stringMatching(new RegExp(`^${prefix}gamma: QueueDoesNotExist`))),
    );
    // Each record stays failed for gamma alone and is backed off.
    expect(visibility).toHaveLength(51);
  });
});

/** Writes the ledger's item saying an endpoint has an event, as the function writes it, expiring at `expiration`. */
async function putLedgerItem(table: string, id: string, expiration: number): Promise<void> {
  const Item = { id: { S: id }, expiration: { N: String(expiration) }, status: { S: COMPLETED } };
  await localDynamoDb().send(new PutItemCommand({ TableName: table, Item }));
}

async function ledgerExpiration(table: string, id: string): Promise<number> {
  const { Item } = await localDynamoDb().send(new GetItemCommand({ TableName: table, Key: { id: { S: id } } }));
  return Number(Item?.expiration?.N);
}

/** The ledger's items as `<event id>#<endpoint>` for the events of `eventIds`, sorted. */
async function ledgerItems(table: string, eventIds: string[]): Promise<string[]> {
  const byKey = new Map(eventIds.map((id) => [idempotencyKey(SOURCE, id), id]));
  const { Items = [] } = await localDynamoDb().send(new ScanCommand({ TableName: table }));
  return Items.map((item) => {
    const [key, endpoint] = item.id!.S!.split('#');
    return `${byKey.get(key!) ?? key}#${endpoint}`;
  }).sort();
}

describe('source path with the delivery ledger', () => {
  it('in every-delivery mode, renews the entry of an endpoint a record skipped when another of its endpoints parks', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'park-ledger');
    const ttlS = 86_400;
    endpoints.gamma.respond((request) => ({ status: request.eventId === 'renew-2' ? 503 : 200 }));
    const run = await pipeline(
      { DELIVERY_LEDGER_TABLE: table, DELIVERY_LEDGER_MODE: 'every-delivery', DELIVERY_LEDGER_TTL_S: String(ttlS) },
      ['beta'],
    );
    // A producer's new copies of two events alpha already has, by entries about to expire; and a new event.
    const soonS = Math.floor(Date.now() / 1000) + 60;
    const renewed = ['renew-1', 'renew-2'];
    for (const id of renewed) await putLedgerItem(table, ledgerId(idempotencyKey(SOURCE, id), 'alpha'), soonS);
    const records = await fromSource(5, ...[...renewed, 'fresh-1'].map((id) => cloudEvent(id)));
    const before = Math.floor(Date.now() / 1000);
    // Each parks for beta; renew-1 and fresh-1 are delivered to gamma (acknowledged), renew-2 is not (back later).
    const { failed } = await handle(run, records);
    expect(failed).toEqual(records.filter((record) => eventIdOf(record) === 'renew-2').map((r) => r.messageId));
    expect(endpoints.alpha.received.map((request) => request.eventId)).toEqual(['fresh-1']);
    for (const record of records) await betaLaneMessage(eventIdOf(record));
    // Skipped like a delivered endpoint, alpha's entry lasts as long as the new copy's: another TTL from now.
    for (const id of renewed) {
      expect(await ledgerExpiration(table, ledgerId(idempotencyKey(SOURCE, id), 'alpha')), id).toBeGreaterThanOrEqual(
        before + ttlS,
      );
    }
    // The endpoints that have each event or hold it in their lane, and no other.
    expect(await ledgerItems(table, [...renewed, 'fresh-1'])).toEqual([
      'fresh-1#alpha',
      'fresh-1#beta',
      'fresh-1#gamma',
      'renew-1#alpha',
      'renew-1#beta',
      'renew-1#gamma',
      'renew-2#alpha',
      'renew-2#beta',
    ]);
  });

  it('in the default mode, writes only for a record that comes back: a parked, acknowledged one costs no write', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'park-ledger');
    endpoints.gamma.respond((request) => ({ status: request.eventId === 'back-1' ? 503 : 200 }));
    const run = await pipeline({ DELIVERY_LEDGER_TABLE: table }, ['beta']);
    const records = await fromSource(5, cloudEvent('quiet-1'), cloudEvent('back-1'));
    const { failed } = await handle(run, records);
    expect(failed).toEqual(records.filter((record) => eventIdOf(record) === 'back-1').map((r) => r.messageId));
    await betaLaneMessage('quiet-1');
    // back-1 comes back for gamma: alpha (delivered) and beta (parked) are not asked again.
    expect(await ledgerItems(table, ['quiet-1', 'back-1'])).toEqual(['back-1#alpha', 'back-1#beta']);
  });

  // Hostile review (rev12): a lane's copy redriven to the source queue skips every other routed endpoint without
  // asking the ledger; settle wrote those skips to the ledger as if they had the event, so the endpoint's own copy
  // (quarantined on its own, redriven after) was then skipped: the event lost for it.
  it.each([
    { mode: 'redeliveries', how: 'fails again', paused: [] as Name[] },
    { mode: 'every-delivery', how: 'parks again', paused: ['beta'] as Name[] },
  ])(
    'in $mode mode, a lane copy redriven to the source that $how does not stop another endpoint’s own copy',
    async ({ mode, paused }) => {
      const table = await createLedgerTable(localDynamoDb(), 'park-ledger');
      endpoints.beta.respond(() => ({ status: 503 }));
      const run = await pipeline({ DELIVERY_LEDGER_TABLE: table, DELIVERY_LEDGER_MODE: mode }, paused);
      // beta's dead-lettered lane copy, moved to the source queue by `npm run redrive -- --to <source queue>`.
      const [laneCopy] = await fromSource(5, cloudEvent('owed-1'));
      laneCopy!.messageAttributes = {
        [LANE_ATTRIBUTE]: laneRecord('any', 'beta', 'owed-1').messageAttributes[LANE_ATTRIBUTE]!,
        [REDRIVE_MARKER]: { dataType: 'String', stringValue: 'arn:dlq', stringListValues: [], binaryListValues: [] },
      };
      await handle(run, [laneCopy!]);
      expect(endpoints.gamma.received).toEqual([]);
      // gamma refused the event earlier (quarantined on its own); that copy is redriven now that gamma is fixed.
      const [gammaCopy] = await fromSource(5, cloudEvent('owed-1'));
      gammaCopy!.messageAttributes = { [REDRIVE_MARKER]: laneCopy!.messageAttributes[REDRIVE_MARKER]! };
      await handle(run, [gammaCopy!]);
      expect(endpoints.gamma.received.map((request) => request.eventId)).toEqual(['owed-1']);
    },
  );
});
