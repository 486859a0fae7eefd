import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackoff } from '../../lib/backoff';
import type { ProcessedRecord } from '../../lib/batch';
import { type ValidEvent, parseEvent } from '../../lib/event';
import { createLedger } from '../../lib/ledger';
import { createQuarantine, QUARANTINE_ATTRIBUTES as Q } from '../../lib/quarantine';
import { createSettle, GROUPED_IDS_PER_LINE, type SettleCounters, type SettleDeps } from '../../lib/settle';
import type { DeliveryFailure, RecordOutcome } from '../../lib/types';
import {
  closedEndpoint,
  createLedgerTable,
  createQueue,
  type LocalQueue,
  localDynamoDb,
  localSqs,
  pollUntil,
  receiveAll,
  receiveAsRecords,
} from '../support/aws';
import { cloudEvent, sqsRecord } from '../support/events';
import { captureLogs } from '../support/logs';

// The side effects are the real SQS and DynamoDB implementations against local-aws-sqs and dynalite; the outcomes are
// written by hand, as lib/batch.ts hands them over (its own tests cover how they are reached).

const sqs = localSqs();
const dynamodb = localDynamoDb();
afterAll(() => {
  sqs.destroy();
  dynamodb.destroy();
});

const signal = () => AbortSignal.timeout(15_000);
const counters = (): SettleCounters => ({ ledgerErrors: 0, quarantineErrors: 0, backoffErrors: 0 });
const event = (record: SQSRecord) => parseEvent(record.body, 256 * 1024);
const processed = (record: SQSRecord, outcome: RecordOutcome, quarantined?: boolean): ProcessedRecord => ({
  record,
  event: event(record),
  outcome,
  ...(quarantined !== undefined ? { quarantined } : {}),
});
const failure = (endpoint: string, kind: DeliveryFailure['kind'], extra: Partial<DeliveryFailure> = {}) => ({
  endpoint,
  kind,
  attempts: 1,
  ...extra,
});
const body = (id: string) => JSON.stringify(cloudEvent(id));

let table: string;
beforeAll(async () => {
  table = await createLedgerTable(dynamodb, 'settle');
});

/** The message bodies that become visible again on `queue`, until `count` came back (the rest stay hidden). */
async function returned(queue: LocalQueue, count: number): Promise<string[]> {
  const seen: string[] = [];
  await pollUntil(
    `${count} message(s) visible again on ${queue.name}`,
    async () => {
      const response = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10, VisibilityTimeout: 600 }),
      );
      seen.push(...(response.Messages ?? []).map((message) => message.Body!));
      return seen.length >= count ? true : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  return seen;
}

describe('createSettle with local SQS and dynalite', () => {
  it('acknowledges delivered and quarantined records, backs off the rest and records what comes back', async () => {
    const [source, quarantineQueue] = await Promise.all([createQueue(sqs, 'settle'), createQueue(sqs, 'settle-q')]);
    // Visible again after 1 s unless the backoff hides them for 600 s.
    const [delivered, invalid, rejected, failed, blocked] = await receiveAsRecords(
      sqs,
      source,
      [
        { body: body('delivered') },
        { body: '{not json' },
        { body: body('rejected') },
        { body: body('failed') },
        {
          body: body('blocked'),
        },
      ],
      1,
    );
    const ledger = createLedger(dynamodb, { table, endpoints: ['alpha', 'beta'], ttlS: 3600 });
    const { logger, lines } = captureLogs();
    const settle = createSettle({
      logger,
      ledgerMode: 'redeliveries',
      quarantine: createQuarantine(sqs, quarantineQueue.url),
      backoff: createBackoff(sqs, { baseDelayS: 600, maxDelayS: 600 }),
      ledger,
    });
    const count = counters();
    const batch = [
      processed(delivered!, { kind: 'delivered', delivered: ['alpha', 'beta'], skipped: [] }),
      processed(invalid!, { kind: 'invalid', reason: 'not-json', detail: 'bad' }),
      processed(rejected!, {
        kind: 'rejected',
        failures: [failure('beta', 'rejected', { status: 422 })],
        delivered: [],
      }),
      processed(failed!, {
        kind: 'failed',
        failures: [failure('beta', 'transient', { status: 503, retryAfterS: 5 })],
        delivered: ['alpha'],
        retryAfterS: 5,
      }),
      processed(blocked!, { kind: 'blocked', groupId: 'g' }),
    ];

    const reported = await settle(batch, signal(), count);

    expect([...reported]).toEqual([failed!.messageId, blocked!.messageId]);
    expect(count).toEqual({ ledgerErrors: 0, quarantineErrors: 0, backoffErrors: 0 });
    const poison = await receiveAll(sqs, quarantineQueue.url);
    expect(
      poison.map((m) => [
        m.Body,
        m.MessageAttributes?.[Q.reason]?.StringValue,
        m.MessageAttributes?.[Q.detail]?.StringValue,
      ]),
    ).toEqual(
      expect.arrayContaining([
        ['{not json', 'not-json', 'bad'],
        [rejected!.body, 'rejected-by-endpoint', 'beta answered 422'],
      ]),
    );
    expect(poison).toHaveLength(2);
    // The acknowledged three come back after their 1 s; the backed-off two stay hidden.
    expect((await returned(source, 3)).sort()).toEqual([delivered!.body, invalid!.body, rejected!.body].sort());
    // Only the record that comes back is in the ledger (the default mode): alpha has it.
    const keys = batch.map((item) => (item.event as ValidEvent).key).filter(Boolean);
    expect(await ledger.lookup(keys, signal())).toEqual(
      new Map([[(batch[3]!.event as ValidEvent).key, new Set(['alpha'])]]),
    );
    expect(lines.map((line) => line.message)).toEqual(
      expect.arrayContaining([
        'invalid record',
        'delivery failed',
        'record not sent: an earlier record of its FIFO group failed',
        'record quarantined',
      ]),
    );
  });

  it('trusts what the FIFO path already quarantined, and reports what it could not', async () => {
    const quarantineQueue = await createQueue(sqs, 'settle-fifo-q');
    const [safe, refused] = [sqsRecord('x'), sqsRecord('y')];
    const { logger, lines } = captureLogs();
    const settle = createSettle({
      logger,
      ledgerMode: 'redeliveries',
      quarantine: createQuarantine(sqs, quarantineQueue.url),
    });
    const count = counters();
    const invalid: RecordOutcome = { kind: 'invalid', reason: 'not-json', detail: 'bad' };

    const reported = await settle(
      [processed(safe, invalid, true), processed(refused, invalid, false)],
      signal(),
      count,
    );

    expect([...reported]).toEqual([refused.messageId]);
    expect(count.quarantineErrors).toBe(1);
    expect(await receiveAll(sqs, quarantineQueue.url)).toEqual([]);
    expect(lines.filter((line) => line.messageId === refused.messageId).map((line) => line.message)).toContain(
      'record not quarantined; reported failed, it comes back later',
    );
  });

  it('reports poison failed and counts each side effect that cannot reach its service', async () => {
    const source = await createQueue(sqs, 'settle-down');
    const [poison, failed] = await receiveAsRecords(sqs, source, [{ body: '[]' }, { body: body('down') }]);
    const down = await closedEndpoint();
    const [sqsDown, dynamoDown] = [localSqs(down), localDynamoDb(down)];
    const { logger, lines } = captureLogs();
    const deps: SettleDeps = {
      logger,
      ledgerMode: 'redeliveries',
      quarantine: createQuarantine(sqsDown, `${down}/123456789012/nowhere`),
      backoff: createBackoff(sqsDown, { baseDelayS: 1, maxDelayS: 1 }),
      ledger: createLedger(dynamoDown, { table, endpoints: ['alpha', 'beta'], ttlS: 3600 }),
    };
    const count = counters();

    const reported = await createSettle(deps)(
      [
        processed(poison!, { kind: 'invalid', reason: 'not-object', detail: 'an array' }),
        processed(failed!, { kind: 'failed', failures: [failure('beta', 'transient')], delivered: ['alpha'] }),
      ],
      signal(),
      count,
    );
    sqsDown.destroy();
    dynamoDown.destroy();

    expect([...reported]).toEqual([poison!.messageId, failed!.messageId]);
    expect(count).toEqual({ ledgerErrors: 1, quarantineErrors: 1, backoffErrors: 1 });
    expect(lines.map((line) => line.message)).toEqual(
      expect.arrayContaining([
        'quarantine failed; the records stay on the queue',
        'delivery ledger not updated; a redelivery will reach these endpoints again',
        'visibility backoff failed; the records come back after the queue visibility timeout',
      ]),
    );
  });

  it('without a quarantine, reports poison failed without calling it a quarantine error', async () => {
    const { logger, lines } = captureLogs();
    const record = sqsRecord('x');
    const count = counters();
    const reported = await createSettle({ logger, ledgerMode: 'redeliveries' })(
      [processed(record, { kind: 'invalid', reason: 'not-json', detail: 'bad' })],
      signal(),
      count,
    );
    expect([...reported]).toEqual([record.messageId]);
    expect(count.quarantineErrors).toBe(0);
    expect(lines.map((line) => line.message)).toEqual(['invalid record']);
  });

  it('in every-delivery mode records delivered and skipped endpoints of delivered events, once per event', async () => {
    const ledger = createLedger(dynamodb, { table, endpoints: ['alpha', 'beta'], ttlS: 3600 });
    const { logger } = captureLogs();
    const id = `every-${Math.random()}`;
    const [first, duplicate] = [sqsRecord(body(id)), sqsRecord(body(id))];
    const outcome: RecordOutcome = { kind: 'delivered', delivered: ['alpha'], skipped: ['beta'] };
    const batch = [processed(first, outcome), processed(duplicate, outcome)];
    const reported = await createSettle({ logger, ledgerMode: 'every-delivery', ledger })(batch, signal(), counters());
    expect(reported.size).toBe(0);
    const key = (batch[0]!.event as ValidEvent).key;
    expect(await ledger.lookup([key], signal())).toEqual(new Map([[key, new Set(['alpha', 'beta'])]]));
  });

  it('groups deliveries cut off by the deadline into one line per endpoint, every id listed', async () => {
    const { logger, lines } = captureLogs();
    const records = Array.from({ length: GROUPED_IDS_PER_LINE + 1 }, () => sqsRecord(body(`cut-${Math.random()}`)));
    const batch = records.map((record) =>
      processed(record, { kind: 'failed', failures: [failure('beta', 'aborted')], delivered: [] }),
    );
    const reported = await createSettle({ logger, ledgerMode: 'redeliveries' })(batch, signal(), counters());
    expect(reported.size).toBe(records.length);
    const grouped = lines.filter((line) => line.message === 'deliveries cut off by the deadline');
    expect(grouped.map((line) => [line.endpoint, line.records])).toEqual([
      ['beta', records.length],
      ['beta', records.length],
    ]);
    expect(grouped.flatMap((line) => String(line.messageIds).split(','))).toEqual(records.map((r) => r.messageId));
    expect(lines.filter((line) => line.message === 'delivery failed')).toEqual([]);
  });
});
