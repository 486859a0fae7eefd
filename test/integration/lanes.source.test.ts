import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
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
import { captureOutput } from '../support/output';

// The source path's park step (lib/lanes/source.ts) as an operator sees it: the backoff of what stays failed, the
// batch's line and metrics, the park's warning. alpha and beta have lanes; gamma's lane queue does not exist.
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

/** Writes the ledger's item saying an endpoint has an event, as the function writes it, expiring at `expiration`. */
async function putLedgerItem(table: string, id: string, expiration: number): Promise<void> {
  const Item = { id: { S: id }, expiration: { N: String(expiration) }, status: { S: COMPLETED } };
  await localDynamoDb().send(new PutItemCommand({ TableName: table, Item }));
}

async function ledgerExpiration(table: string, id: string): Promise<number> {
  const { Item } = await localDynamoDb().send(new GetItemCommand({ TableName: table, Key: { id: { S: id } } }));
  return Number(Item?.expiration?.N);
}

describe('source path with the delivery ledger in every-delivery mode', () => {
  it('renews the ledger entry of an endpoint a record skipped when another of its endpoints parks', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'park-ledger');
    const ttlS = 86_400;
    endpoints.gamma.respond((request) => ({ status: request.eventId === 'renew-2' ? 503 : 200 }));
    const run = await pipeline(
      { DELIVERY_LEDGER_TABLE: table, DELIVERY_LEDGER_MODE: 'every-delivery', DELIVERY_LEDGER_TTL_S: String(ttlS) },
      ['beta'],
    );
    // A producer's new copies of two events alpha already has, by entries about to expire.
    const soonS = Math.floor(Date.now() / 1000) + 60;
    const ids = ['renew-1', 'renew-2'];
    for (const id of ids) await putLedgerItem(table, ledgerId(idempotencyKey(SOURCE, id), 'alpha'), soonS);
    const records = await fromSource(5, ...ids.map((id) => cloudEvent(id)));
    const before = Math.floor(Date.now() / 1000);
    // renew-1: delivered to gamma, parked for beta (acknowledged); renew-2: parked for beta, gamma failed (back later).
    const { failed } = await handle(run, records);
    expect(failed).toEqual([records[1]!.messageId]);
    expect(endpoints.alpha.received).toEqual([]);
    for (const id of ids) await betaLaneMessage(id);
    // Skipped like a delivered endpoint, alpha's entry lasts as long as the new copy's: another TTL from now.
    for (const id of ids) {
      expect(await ledgerExpiration(table, ledgerId(idempotencyKey(SOURCE, id), 'alpha')), id).toBeGreaterThanOrEqual(
        before + ttlS,
      );
    }
  });
});
