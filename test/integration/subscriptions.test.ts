import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createIngest, type Ingest, loadConfig } from '../../lib/index';
import { MetricName } from '../../lib/observability/observability';
import { createLedger } from '../../lib/settle/ledger';
import { createLedgerTable, localDynamoDb } from '../support/aws';
import { closedPortUrl, testEndpoint } from '../support/endpoints';
import { cloudEvent, lambdaContext, sqsEvent, sqsRecord } from '../support/events';

let ingest: Ingest | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await ingest?.close();
  ingest = undefined;
});

const record = (id: string, type: string, source = 'urn:test:orders', receiveCount = 1) =>
  sqsRecord(JSON.stringify(cloudEvent(id, { type, source })), {
    messageId: `m-${id}`,
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: String(Date.now()),
      SenderId: 'AIDATEST',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
  });

/** The pipeline with an endpoints file: orders (type prefix), audit (source), refunds (type, unreachable). */
async function pipeline(ledgerTable?: string, ledgerMode = 'redeliveries') {
  const [orders, audit] = await Promise.all([testEndpoint(), testEndpoint()]);
  const refunds = await closedPortUrl();
  const document = {
    endpoints: [
      { name: 'orders', url: orders.url, filter: { type: { prefix: 'com.example.order.' } } },
      { name: 'audit', url: audit.url, filter: { source: ['urn:audit', { prefix: 'urn:test:orders' }] } },
      { name: 'refunds', url: refunds, filter: { type: 'com.example.refund.issued' }, maxAttempts: 1 },
    ],
  };
  const config = loadConfig(
    {
      DELIVERY_RETRY_BASE_MS: '1',
      DELIVERY_RETRY_MAX_MS: '2',
      CIRCUIT_BREAKER_THRESHOLD: '0',
      DELIVERY_LEDGER_MODE: ledgerMode,
    },
    { document, source: 'test.yml' },
  );
  const logger = new Logger({ serviceName: 'test', logLevel: 'SILENT' });
  const metrics = new Metrics({ namespace: 'Test', serviceName: 'test' });
  const info = vi.spyOn(logger, 'info');
  const warn = vi.spyOn(Logger.prototype, 'warn');
  const added = vi.spyOn(metrics, 'addMetric');
  const dynamodb = ledgerTable ? localDynamoDb() : undefined;
  const ledger =
    dynamodb && ledgerTable
      ? createLedger(dynamodb, { table: ledgerTable, endpoints: config.endpoints.map((e) => e.name), ttlS: 3600 })
      : undefined;
  const lookup = ledger ? vi.spyOn(ledger, 'lookup') : undefined;
  ingest = createIngest(config, { logger, metrics, ...(ledger ? { ledger } : {}) });
  const metric = (name: string) => added.mock.calls.filter(([n]) => n === name).map(([, , value]) => value);
  return { ingest, orders, audit, info, warn, metric, lookup };
}

describe('endpoints as subscriptions', () => {
  it('acknowledges what every endpoint it is routed to took; an unrouted event is acknowledged, counted, logged', async () => {
    const run = await pipeline();
    const records = [
      record('o-1', 'com.example.order.created'),
      record('r-1', 'com.example.refund.issued', 'urn:payments'),
      record('x-1', 'com.example.stock.moved', 'urn:warehouse'),
      record('x-2', 'com.example.stock.moved', 'urn:warehouse'),
    ];
    const response = await run.ingest.handle(sqsEvent(records), lambdaContext());
    // Only the refund: its one endpoint is down. The others do not wait for an endpoint they are not routed to.
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: 'm-r-1' }]);
    expect([...run.orders.accepted.keys()]).toEqual(['o-1']);
    expect([...run.audit.accepted.keys()]).toEqual(['o-1']);
    expect(run.metric(MetricName.RecordsRouted)).toEqual([2]);
    expect(run.metric(MetricName.RecordsUnrouted)).toEqual([2]);
    const unrouted = run.info.mock.calls.filter(
      ([message]) => message === 'records routed to no endpoint; acknowledged',
    );
    expect(unrouted).toHaveLength(1);
    expect(unrouted[0]?.[1]).toMatchObject({
      records: 2,
      kinds: [{ type: 'com.example.stock.moved', source: 'urn:warehouse', records: 2 }],
      eventIds: ['x-1', 'x-2'],
    });
    // "Where is event X": the failure line lists the endpoints the event is routed to.
    const failed = run.warn.mock.calls.find(([message]) => message === 'delivery failed');
    expect(failed?.[1]).toMatchObject({ endpoint: 'refunds', routedTo: 'refunds' });
  });

  it('the ledger and the redelivery respect the routing: a retry reaches only the endpoints still missing it', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'subs');
    const run = await pipeline(table);
    const refund = (receiveCount: number) => record('r-2', 'com.example.refund.issued', 'urn:audit', receiveCount);
    expect((await run.ingest.handle(sqsEvent([refund(1)]), lambdaContext())).batchItemFailures).toHaveLength(1);
    // SQS hands it out again: the ledger says audit, one of the two endpoints it is routed to, has it.
    expect((await run.ingest.handle(sqsEvent([refund(2)]), lambdaContext())).batchItemFailures).toHaveLength(1);
    // audit took it the first time; orders, not routed, never saw it.
    expect(run.audit.received.filter((r) => r.eventId === 'r-2')).toHaveLength(1);
    expect(run.orders.received.filter((r) => r.eventId === 'r-2')).toHaveLength(0);
    // The ledger is asked only about the endpoints the event is routed to.
    const [keys, , endpointsOf] = run.lookup!.mock.calls.at(-1)!;
    expect(endpointsOf?.(keys[0]!)).toEqual(['audit', 'refunds']);
    // An event routed nowhere costs no ledger read, even redelivered.
    const calls = run.lookup!.mock.calls.length;
    const unrouted = record('x-3', 'com.example.stock.moved', 'urn:warehouse', 2);
    await run.ingest.handle(sqsEvent([unrouted]), lambdaContext());
    expect(run.lookup!.mock.calls).toHaveLength(calls);
  });

  it('in every-delivery mode a duplicate send skips the endpoints it was routed to that have it', async () => {
    const table = await createLedgerTable(localDynamoDb(), 'subs-every');
    const run = await pipeline(table, 'every-delivery');
    const order = record('o-2', 'com.example.order.created');
    expect((await run.ingest.handle(sqsEvent([order]), lambdaContext())).batchItemFailures).toEqual([]);
    // The same event again as a new message: the ledger knows both endpoints it was routed to have it.
    expect((await run.ingest.handle(sqsEvent([order]), lambdaContext())).batchItemFailures).toEqual([]);
    expect(run.orders.received).toHaveLength(1);
    expect(run.audit.received).toHaveLength(1);
    const [keys, , endpointsOf] = run.lookup!.mock.calls.at(-1)!;
    expect(endpointsOf?.(keys[0]!)).toEqual(['orders', 'audit']);
  });
});
