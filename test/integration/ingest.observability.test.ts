import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { SQSRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createIngest, type Ingest, type IngestDeps, loadConfig } from '../../lib/index';
import type { Backoff, Ledger, Quarantine } from '../../lib/types';
import { TestEndpoint } from '../support/endpoints';
import { eventRecord, lambdaContext, sqsEvent, sqsRecord } from '../support/events';
import { captureOutput } from '../support/output';

let alpha: TestEndpoint;
let beta: TestEndpoint;
let ingest: Ingest | undefined;
const saved = process.env.POWERTOOLS_METRICS_DISABLED;

beforeAll(async () => {
  [alpha, beta] = await Promise.all([TestEndpoint.start(), TestEndpoint.start()]);
});
afterAll(async () => {
  await Promise.all([alpha.close(), beta.close()]);
});
afterEach(async () => {
  process.env.POWERTOOLS_METRICS_DISABLED = saved;
  await ingest?.close();
  ingest = undefined;
  alpha.reset();
  beta.reset();
});

/** A pipeline that really writes its log lines and EMF metrics (the suite silences both by default). */
function pipeline(env: Record<string, string>, deps: IngestDeps = {}) {
  process.env.POWERTOOLS_METRICS_DISABLED = 'false';
  const logger = new Logger({ serviceName: 'ingest-test', logLevel: 'INFO' });
  const metrics = new Metrics({ serviceName: 'ingest-test', namespace: 'IngestTest' });
  const config = loadConfig({ ENDPOINTS: `alpha=${alpha.url},beta=${beta.url}`, DELIVERY_MAX_ATTEMPTS: '1', ...env });
  ingest = createIngest(config, { logger, metrics, ...deps });
  return { ingest, metrics };
}

const failing = (message: string) => async () => {
  throw new Error(message);
};
const idOf = (records: SQSRecord[], text: string) => records.find((record) => record.body.includes(text))!.messageId;

describe('what the pipeline tells an operator', () => {
  it('counts every outcome and every side-effect error in EMF, and writes one line for each', async () => {
    beta.respond((request) => {
      if (request.eventId === 'down') return { status: 500 };
      if (request.eventId === 'refused') return { status: 400 };
      if (request.eventId === 'slow') return { hang: true };
      return { status: 200 };
    });
    const records = [
      eventRecord('ok-1'),
      eventRecord('ok-2'),
      eventRecord('down'),
      eventRecord('refused'),
      eventRecord('slow'),
      sqsRecord('nope'),
    ];
    const nope = idOf(records, 'nope');
    // The quarantine takes the invalid body but refuses the rejected event; backoff and ledger are down.
    const quarantine: Quarantine = {
      send: async (items) => new Set(items.map((i) => i.record.messageId).filter((id) => id === nope)),
    };
    const backoff: Backoff = { apply: failing('AccessDenied: sqs:ChangeMessageVisibility') };
    const ledger: Ledger = { lookup: failing('ledger read refused'), record: failing('ledger write refused') };
    // every-delivery: the ledger is read for first receives too, so both of its errors are counted.
    const run = pipeline(
      { DEADLINE_MARGIN_MS: '500', DELIVERY_LEDGER_MODE: 'every-delivery' },
      { quarantine, backoff, ledger },
    );

    const { result, lines } = await captureOutput(async () => {
      const response = await run.ingest.handle(sqsEvent(records), lambdaContext(1500));
      run.metrics.publishStoredMetrics();
      return response;
    });

    const failedIds = ['down', 'refused', 'slow'].map((text) => idOf(records, `"${text}"`));
    expect(result.batchItemFailures.map((item) => item.itemIdentifier).sort()).toEqual(failedIds.sort());
    const emf = lines.filter((line) => '_aws' in line);
    expect(emf.find((line) => 'RecordsReceived' in line)).toMatchObject({
      RecordsReceived: 6,
      RecordsAcknowledged: 3,
      RecordsFailed: 3,
      RecordsInvalid: 1,
      RecordsQuarantined: 1,
      DeadlineAborts: 1,
      QuarantineErrors: 1,
      BackoffErrors: 1,
      LedgerErrors: 2,
      BatchDuration: expect.any(Number),
    });
    expect(emf.find((line) => line.endpoint === 'alpha')).toMatchObject({
      DeliverySucceeded: 5,
      DeliveryFailed: 0,
      DeliveryRetries: 0,
      DeliverySkipped: 0,
      DeliveryLatency: expect.anything(),
    });
    expect(emf.find((line) => line.endpoint === 'beta')).toMatchObject({
      DeliverySucceeded: 2,
      DeliveryFailed: 3,
      DeliveryRetries: 0,
      DeliverySkipped: 0,
    });

    const logs = lines.filter((line) => typeof line.message === 'string');
    const find = (message: string | RegExp) => logs.filter((line) => String(line.message).match(message));
    expect(find('delivery failed')).toEqual([
      expect.objectContaining({ level: 'WARN', endpoint: 'beta', kind: 'transient', status: 500, eventId: 'down' }),
      expect.objectContaining({ level: 'WARN', endpoint: 'beta', kind: 'rejected', status: 400, eventId: 'refused' }),
    ]);
    expect(find('invalid record')).toEqual([expect.objectContaining({ messageId: nope, reason: 'not-json' })]);
    expect(find('deliveries cut off by the deadline')).toEqual([
      expect.objectContaining({ endpoint: 'beta', kind: 'aborted', records: 1, messageIds: idOf(records, '"slow"') }),
    ]);
    expect(find('record quarantined')).toEqual([expect.objectContaining({ messageId: nope, reason: 'not-json' })]);
    expect(find(/^record not quarantined/)).toEqual([
      expect.objectContaining({ messageId: idOf(records, '"refused"'), reason: 'rejected-by-endpoint' }),
    ]);
    expect(find(/^visibility backoff failed/)).toEqual([
      expect.objectContaining({ error: expect.stringContaining('sqs:ChangeMessageVisibility') }),
    ]);
    expect(find(/^delivery ledger unavailable/)).toEqual([
      expect.objectContaining({ error: expect.stringContaining('ledger read refused') }),
    ]);
    expect(find(/^delivery ledger not updated/)).toEqual([
      expect.objectContaining({ error: expect.stringContaining('ledger write refused'), entries: 7 }),
    ]);
    expect(find('batch processed')).toEqual([
      expect.objectContaining({
        records: 6,
        acknowledged: 3,
        failed: 3,
        invalid: 1,
        rejected: 1,
        quarantined: 1,
        blocked: 0,
        deadlineAborted: true,
      }),
    ]);
  });

  it('warns once per FIFO record held back behind an earlier failure of its group', async () => {
    beta.respond((request) => ({ status: request.eventId === 'first' ? 503 : 200 }));
    const first = eventRecord('first', { groupId: 'orders-7' });
    const second = eventRecord('second', { groupId: 'orders-7' });
    const run = pipeline({});
    const { result, lines } = await captureOutput(() => run.ingest.handle(sqsEvent([first, second]), lambdaContext()));

    expect(result.batchItemFailures.map((item) => item.itemIdentifier).sort()).toEqual(
      [first.messageId, second.messageId].sort(),
    );
    expect(beta.received.map((request) => request.eventId)).toEqual(['first']);
    expect(
      lines.filter((line) => line.message === 'record not sent: an earlier record of its FIFO group failed'),
    ).toEqual([expect.objectContaining({ level: 'WARN', messageId: second.messageId, groupId: 'orders-7' })]);
  });
});

describe('the circuit breaker, through the pipeline', () => {
  it('stops sending to an endpoint after the threshold and keeps it closed off across batches of the warm instance', async () => {
    beta.respond(() => ({ status: 503 }));
    const run = pipeline({
      CIRCUIT_BREAKER_THRESHOLD: '2',
      CIRCUIT_BREAKER_HALF_OPEN_MS: '600000',
      ENDPOINT_MAX_CONNECTIONS: '1',
    });
    const records = Array.from({ length: 6 }, (_, i) => eventRecord(`b-${i}`));
    const { result, lines } = await captureOutput(() => run.ingest.handle(sqsEvent(records), lambdaContext()));

    expect(result.batchItemFailures).toHaveLength(6);
    expect(beta.received).toHaveLength(2);
    expect(alpha.received).toHaveLength(6);
    expect(lines.some((line) => line.endpoint === 'beta' && line.kind === 'circuit-open')).toBe(true);

    // Healthy again, but the half-open period has not passed: the open circuit still spares it.
    beta.respond(() => ({ status: 200 }));
    const again = await captureOutput(() => run.ingest.handle(sqsEvent([eventRecord('b-late')]), lambdaContext()));
    expect(again.result.batchItemFailures).toHaveLength(1);
    expect(beta.received).toHaveLength(2);
  });
});

describe('the side effects deadline', () => {
  it('stops a side effect that hangs before Lambda times out, leaving the answer its reserve', async () => {
    beta.respond(() => ({ status: 503 }));
    let remainingAtAbort: number | undefined;
    // The side effects stop 2 s before the end (the reserve of a 4 s margin): room for a late timer on a loaded machine.
    const context = lambdaContext(6000);
    const hang: Backoff = {
      apply: (_items, signal) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            remainingAtAbort = context.getRemainingTimeInMillis();
            reject(new Error('aborted'));
          });
        }),
    };
    const run = pipeline({ DEADLINE_MARGIN_MS: '4000' }, { backoff: hang });
    const { result } = await captureOutput(() => run.ingest.handle(sqsEvent([eventRecord('stuck')]), context));

    expect(result.batchItemFailures).toHaveLength(1);
    // The side effects run past the delivery deadline (4000 ms before the end) and stop at the reserve (2000 ms).
    expect(remainingAtAbort).toBeGreaterThanOrEqual(250);
    expect(remainingAtAbort).toBeLessThanOrEqual(2250);
    expect(context.getRemainingTimeInMillis()).toBeGreaterThan(0);
  });
});
