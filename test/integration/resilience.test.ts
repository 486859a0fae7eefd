import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { DeleteMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import { afterAll, describe, expect, it } from 'vitest';
import { createIngest, type Ingest, idempotencyKey, loadConfig } from '../../lib/index';
import { createEdges } from '../../lib/ingest/edges';
import { redrive } from '../../lib/redrive';
import { createQuarantine, QUARANTINE_ATTRIBUTES as Q } from '../../lib/settle/quarantine';
import {
  closedEndpoint,
  createLedgerTable,
  createQueue,
  type LocalQueue,
  localDynamoDb,
  localSqs,
  pollUntil,
  receiveAll,
  sendMessages,
  toLambdaRecord,
} from '../support/aws';
import { TestEndpoint } from '../support/endpoints';
import { cloudEvent, lambdaContext } from '../support/events';

const sqs = localSqs();
const dynamodb = localDynamoDb();
const cleanups: (() => Promise<void>)[] = [];

afterAll(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  sqs.destroy();
  dynamodb.destroy();
});

interface Setup {
  env?: Record<string, string>;
  clients?: { sqs?: SQSClient; dynamodb?: ReturnType<typeof localDynamoDb> };
}

/**
 * The real pipeline with the real SQS/DynamoDB edges, as the handler builds it, delivering to two endpoints of its
 * own (tests run concurrently).
 */
async function pipeline({ env = {}, clients = {} }: Setup = {}) {
  const [alpha, beta] = await Promise.all([TestEndpoint.start(), TestEndpoint.start()]);
  const config = loadConfig({
    ENDPOINTS: `alpha=${alpha.url},beta=${beta.url}`,
    DELIVERY_MAX_ATTEMPTS: '1',
    CIRCUIT_BREAKER_THRESHOLD: '0',
    RETRY_BASE_DELAY_S: '2',
    RETRY_MAX_DELAY_S: '4',
    ...env,
  });
  const edges = await createEdges(config, { sqs, dynamodb, ...clients });
  const ingest = createIngest(config, edges);
  cleanups.push(async () => {
    await ingest.close();
    await Promise.all([alpha.close(), beta.close()]);
  });
  return { config, edges, ingest, alpha, beta };
}

/** One poll of the Lambda event source: receive, invoke, delete what the function acknowledged. */
async function invoke(
  ingest: Ingest,
  queue: LocalQueue,
): Promise<{ records: SQSRecord[]; response: SQSBatchResponse }> {
  const messages = await receiveAll(sqs, queue.url, { visibilityTimeoutS: 30 });
  const records = messages.map((message) => toLambdaRecord(message, queue.arn));
  const response = await ingest.handle({ Records: records }, lambdaContext());
  const failed = new Set(response.batchItemFailures.map((item) => item.itemIdentifier));
  const acked = records.filter((record) => !failed.has(record.messageId));
  for (let i = 0; i < acked.length; i += 10) {
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queue.url,
        Entries: acked
          .slice(i, i + 10)
          .map((record, index) => ({ Id: String(index), ReceiptHandle: record.receiptHandle })),
      }),
    );
  }
  return { records, response };
}

const event = (id: string) => JSON.stringify(cloudEvent(id));
const failedIds = (response: SQSBatchResponse) => response.batchItemFailures.map((item) => item.itemIdentifier).sort();
const attr = (message: { MessageAttributes?: Record<string, { StringValue?: string }> }, name: string) =>
  message.MessageAttributes?.[name]?.StringValue;

/** Waits until `count` messages are visible on the queue again; fails if any shows up before `minimumS` after `since`. */
async function waitForReturn(queue: LocalQueue, count: number, since: number, minimumS: number) {
  return pollUntil(
    `${count} record(s) back on ${queue.name}`,
    async () => {
      const visible = await receiveAll(sqs, queue.url, { visibilityTimeoutS: 0 });
      if (visible.length > 0) expect(Date.now() - since).toBeGreaterThanOrEqual(minimumS * 1000);
      return visible.length >= count ? visible : undefined;
    },
    { timeoutMs: (minimumS * 2 + 10) * 1000, intervalMs: 100 },
  );
}

describe.concurrent('resilience through the real pipeline, local SQS and DynamoDB', () => {
  it('quarantines poison bodies intact with their reasons and acknowledges them', async () => {
    const [source, quarantine] = await Promise.all([createQueue(sqs, 'ingest'), createQueue(sqs, 'quarantine')]);
    const { ingest, alpha } = await pipeline({
      env: { QUARANTINE_QUEUE_URL: quarantine.url, MAX_EVENT_BYTES: '4096' },
    });
    const poison = {
      'not-json': '{"specversion": "1.0", oops',
      'not-object': '[1, 2, 3]',
      'invalid-cloudevent': '{ "specversion": "0.3", "id": "ünï" }',
      'too-large': JSON.stringify(cloudEvent('big', { data: 'x'.repeat(5000) })),
    };
    await sendMessages(sqs, source.url, [
      ...Object.values(poison).map((body) => ({
        body,
        attributes: { origin: { DataType: 'String', StringValue: 'batch-7' } },
      })),
      { body: event('good-1') },
    ]);

    const { records, response } = await invoke(ingest, source);

    expect(response.batchItemFailures).toEqual([]);
    expect(alpha.accepted.get('good-1')).toBe(1);
    const landed = await receiveAll(sqs, quarantine.url);
    expect(landed).toHaveLength(4);
    for (const [reason, body] of Object.entries(poison)) {
      const message = landed.find((m) => m.Body === body);
      const original = records.find((r) => r.body === body)!;
      expect(message, reason).toBeDefined();
      expect(attr(message!, Q.reason)).toBe(reason);
      expect(attr(message!, Q.messageId)).toBe(original.messageId);
      expect(attr(message!, Q.sourceQueue)).toBe(source.arn);
      expect(attr(message!, Q.receiveCount)).toBe('1');
      expect(attr(message!, Q.detail)).toBeTruthy();
      expect(attr(message!, 'origin')).toBe('batch-7');
    }
    expect(await receiveAll(sqs, source.url, { visibilityTimeoutS: 0 })).toEqual([]);
  });

  it('quarantines an event an endpoint rejects, naming the endpoint and status', async () => {
    const [source, quarantine] = await Promise.all([createQueue(sqs, 'ingest'), createQueue(sqs, 'quarantine')]);
    const { ingest, beta } = await pipeline({ env: { QUARANTINE_QUEUE_URL: quarantine.url } });
    beta.respond((request) => ({ status: request.eventId === 'refused' ? 422 : 200 }));
    await sendMessages(sqs, source.url, [{ body: event('refused') }]);

    const { response } = await invoke(ingest, source);

    expect(response.batchItemFailures).toEqual([]);
    const [landed] = await receiveAll(sqs, quarantine.url);
    expect(landed?.Body).toBe(event('refused'));
    expect(attr(landed!, Q.reason)).toBe('rejected-by-endpoint');
    expect(attr(landed!, Q.endpoint)).toBe('beta');
    expect(attr(landed!, Q.status)).toBe('422');
  });

  it('loses nothing when the quarantine queue is unreachable: the record is reported failed and comes back', async () => {
    const source = await createQueue(sqs, 'ingest');
    const deadSqs = localSqs(await closedEndpoint());
    const { config, edges } = await pipeline({
      env: { QUARANTINE_QUEUE_URL: `${await closedEndpoint()}/123456789012/quarantine` },
    });
    // Backoff keeps the working client; only the quarantine queue is unreachable (connection refused).
    const ingest = createIngest(config, {
      ...edges,
      quarantine: createQuarantine(deadSqs, config.quarantineQueueUrl!),
    });
    cleanups.push(() => ingest.close());
    await sendMessages(sqs, source.url, [{ body: 'not json at all' }, { body: event('fine') }]);

    const since = Date.now();
    const { records, response } = await invoke(ingest, source);
    deadSqs.destroy();

    expect(failedIds(response)).toEqual([records.find((r) => r.body === 'not json at all')!.messageId]);
    // d = 2 s for a first receive, jittered in [1, 2]: back after at least 1 s, still intact.
    const back = await waitForReturn(source, 1, since, 1);
    expect(back.map((m) => m.Body)).toEqual(['not json at all']);
    // A redelivery (local SQS counts one extra receive after a zero visibility timeout, hence not exactly 2).
    expect(Number(back[0]!.Attributes?.ApproximateReceiveCount)).toBeGreaterThanOrEqual(2);
  });

  it('keeps a failed record invisible for its backoff, then redelivers it only to the endpoint that missed it', async () => {
    const source = await createQueue(sqs, 'ingest');
    const table = await createLedgerTable(dynamodb);
    const { ingest, alpha, beta } = await pipeline({ env: { DELIVERY_LEDGER_TABLE: table } });
    beta.respond(() => ({ status: 503 }));
    await sendMessages(sqs, source.url, [{ body: event('flaky') }]);

    const since = Date.now();
    const first = await invoke(ingest, source);
    expect(failedIds(first.response)).toEqual([first.records[0]!.messageId]);
    expect(alpha.accepted.get('flaky')).toBe(1);

    const back = await waitForReturn(source, 1, since, 1);
    // A redelivery (local SQS counts one extra receive after a zero visibility timeout, hence not exactly 2).
    expect(Number(back[0]!.Attributes?.ApproximateReceiveCount)).toBeGreaterThanOrEqual(2);
    beta.respond(() => ({ status: 200 }));

    const second = await invoke(ingest, source);
    expect(second.response.batchItemFailures).toEqual([]);
    expect(beta.accepted.get('flaky')).toBe(1);
    // alpha took it the first time: the ledger kept it from getting it again.
    expect(alpha.received.filter((r) => r.eventId === 'flaky')).toHaveLength(1);
    expect(await receiveAll(sqs, source.url, { visibilityTimeoutS: 0 })).toEqual([]);
  });

  it("waits out an endpoint's longer Retry-After", async () => {
    const source = await createQueue(sqs, 'ingest');
    const { ingest, beta } = await pipeline();
    beta.respond(() => ({ status: 429, headers: { 'retry-after': '3' } }));
    await sendMessages(sqs, source.url, [{ body: event('throttled') }]);
    const since = Date.now();
    const { response } = await invoke(ingest, source);
    expect(response.batchItemFailures).toHaveLength(1);
    await waitForReturn(source, 1, since, 3);
  });

  it('with the ledger in every-delivery mode, the same event sent twice reaches each endpoint once', async () => {
    const source = await createQueue(sqs, 'ingest');
    const table = await createLedgerTable(dynamodb);
    const { ingest, alpha, beta } = await pipeline({
      env: { DELIVERY_LEDGER_TABLE: table, DELIVERY_LEDGER_MODE: 'every-delivery' },
    });
    await sendMessages(sqs, source.url, [{ body: event('twice') }]);
    await invoke(ingest, source);
    await sendMessages(sqs, source.url, [{ body: event('twice') }]);
    const { response } = await invoke(ingest, source);
    expect(response.batchItemFailures).toEqual([]);
    expect(alpha.received).toHaveLength(1);
    expect(beta.received).toHaveLength(1);
  });

  it('in the default mode the ledger is untouched while all goes well; a producer duplicate relies on the key', async () => {
    const source = await createQueue(sqs, 'ingest');
    const table = await createLedgerTable(dynamodb);
    const { ingest, alpha, beta } = await pipeline({ env: { DELIVERY_LEDGER_TABLE: table } });
    await sendMessages(sqs, source.url, [{ body: event('dup') }, { body: event('other') }]);
    await invoke(ingest, source);
    expect((await dynamodb.send(new ScanCommand({ TableName: table }))).Items).toEqual([]);
    // The same event again as a new message (receive count 1): not looked up, delivered again with the same key.
    await sendMessages(sqs, source.url, [{ body: event('dup') }]);
    const { response } = await invoke(ingest, source);
    expect(response.batchItemFailures).toEqual([]);
    for (const endpoint of [alpha, beta]) {
      const dups = endpoint.received.filter((r) => r.eventId === 'dup');
      expect(dups).toHaveLength(2);
      expect(new Set(dups.map((r) => r.headers['idempotency-key']))).toEqual(
        new Set([idempotencyKey('urn:test:orders', 'dup')]),
      );
    }
  });

  it('in the default mode only an event that goes back to the queue with endpoints done is written', async () => {
    const source = await createQueue(sqs, 'ingest');
    const table = await createLedgerTable(dynamodb);
    const { ingest, beta } = await pipeline({ env: { DELIVERY_LEDGER_TABLE: table } });
    beta.respond((request) => ({ status: request.eventId === 'half' ? 503 : 200 }));
    await sendMessages(sqs, source.url, [{ body: event('half') }, { body: event('whole') }]);
    await invoke(ingest, source);
    const items = (await dynamodb.send(new ScanCommand({ TableName: table }))).Items ?? [];
    expect(items.map((item) => item.id?.S)).toEqual([`${idempotencyKey('urn:test:orders', 'half')}#alpha`]);
  });

  it('still delivers everything, with the same Idempotency-Key, when the ledger is down', async () => {
    const source = await createQueue(sqs, 'ingest');
    const deadDynamo = localDynamoDb(await closedEndpoint());
    const { ingest, alpha, beta } = await pipeline({
      env: { DELIVERY_LEDGER_TABLE: 'ledger' },
      clients: { dynamodb: deadDynamo },
    });
    await sendMessages(sqs, source.url, [{ body: event('e-1') }, { body: event('e-2') }]);
    const first = await invoke(ingest, source);
    await sendMessages(sqs, source.url, [{ body: event('e-1') }]);
    const second = await invoke(ingest, source);
    deadDynamo.destroy();

    expect(first.response.batchItemFailures).toEqual([]);
    expect(second.response.batchItemFailures).toEqual([]);
    for (const endpoint of [alpha, beta]) {
      expect(endpoint.accepted).toEqual(
        new Map([
          ['e-1', 2],
          ['e-2', 1],
        ]),
      );
      const keys = new Set(
        endpoint.received.filter((r) => r.eventId === 'e-1').map((r) => r.headers['idempotency-key']),
      );
      expect(keys).toEqual(new Set([idempotencyKey('urn:test:orders', 'e-1')]));
    }
  });

  it('redrive brings quarantined events back, and they reach only the endpoint that refused them', async () => {
    const [source, quarantine] = await Promise.all([createQueue(sqs, 'ingest'), createQueue(sqs, 'quarantine')]);
    const table = await createLedgerTable(dynamodb);
    const { ingest, alpha, beta } = await pipeline({
      env: { QUARANTINE_QUEUE_URL: quarantine.url, DELIVERY_LEDGER_TABLE: table },
    });
    const ids = Array.from({ length: 15 }, (_, i) => `refused-${i}`);
    beta.respond(() => ({ status: 400 }));
    await sendMessages(
      sqs,
      source.url,
      ids.map((id) => ({ body: event(id) })),
    );
    await invoke(ingest, source);
    expect(alpha.accepted.size).toBe(15);

    // beta's bug is fixed; move the quarantined events back to the queue they came from.
    beta.respond(() => ({ status: 200 }));
    // A long poll before concluding the queue is empty: local SQS's short poll can answer empty under load.
    const summary = await redrive(sqs, { from: quarantine.url, emptyWaitS: 1 });
    expect(summary).toMatchObject({ moved: 15, failed: 0, remaining: 0, destinations: { [source.url]: 15 } });

    const { response } = await invoke(ingest, source);
    expect(response.batchItemFailures).toEqual([]);
    expect([...beta.accepted.keys()].sort()).toEqual([...ids].sort());
    expect(alpha.received).toHaveLength(15);
  });
});
