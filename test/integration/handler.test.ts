import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import { createQueue, LOCAL_AWS, localSqs, receiveAsRecords } from '../support/aws';
import { TestEndpoint } from '../support/endpoints';
import { cloudEvent, lambdaContext, sqsEvent, sqsRecord } from '../support/events';
import { captureOutput } from '../support/output';

type Handler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

const saved = { ...process.env };
let alpha: TestEndpoint;
let beta: TestEndpoint;

beforeAll(async () => {
  [alpha, beta] = await Promise.all([TestEndpoint.start(), TestEndpoint.start()]);
});
afterAll(async () => {
  process.env = saved;
  await Promise.all([alpha.close(), beta.close()]);
});
beforeEach(() => {
  alpha.reset();
  beta.reset();
  vi.resetModules();
  process.env = { ...saved };
});

async function loadHandler(env: Record<string, string>): Promise<Handler> {
  // The AWS clients talk to the suite's local SQS server, never to AWS.
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_SQS: inject('sqsEndpoint'),
    AWS_REGION: LOCAL_AWS.region,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    ...env,
  });
  const module = (await import('../../functions/ingest/handler')) as { handler: Handler };
  return module.handler;
}

describe('functions/ingest/handler', () => {
  it('stops at cold start with an error naming the variable when the configuration is bad', async () => {
    process.env.ENDPOINTS = undefined;
    delete process.env.ENDPOINTS;
    await expect(loadHandler({})).rejects.toThrow(/^ENDPOINTS: is required/);
    vi.resetModules();
    await expect(loadHandler({ ENDPOINTS: `alpha=${alpha.url}`, DELIVERY_TIMEOUT_MS: 'soon' })).rejects.toThrow(
      /DELIVERY_TIMEOUT_MS: 'soon' is not a whole number/,
    );
  });

  it('answers with the undelivered records and writes one line per failure, one summary and EMF metrics', async () => {
    const sqs = localSqs();
    const queue = await createQueue(sqs, 'handler-src');
    const dlq = await createQueue(sqs, 'handler-dlq');
    beta.respond((request) => ({
      status: request.eventId === 'refused' ? 404 : request.eventId === 'down' ? 500 : 200,
    }));
    const handler = await loadHandler({
      ENDPOINTS: `alpha=${alpha.url},beta=${beta.url}`,
      QUARANTINE_QUEUE_URL: dlq.url,
      DELIVERY_RETRY_BASE_MS: '5',
      POWERTOOLS_LOG_LEVEL: 'INFO',
      POWERTOOLS_METRICS_DISABLED: 'false',
    });
    const secret = 'card-4111-1111';
    const records = await receiveAsRecords(sqs, queue, [
      { body: JSON.stringify(cloudEvent('refused', { data: { secret } })) },
      { body: JSON.stringify(cloudEvent('down', { data: { secret } })) },
      ...Array.from({ length: 5 }, (_, i) => ({ body: JSON.stringify(cloudEvent(`ok-${i}`)) })),
      { body: 'nope' },
    ]);
    const byBody = (text: string) => records.find((record) => record.body.includes(text))!;
    const { result, lines } = await captureOutput(() => handler(sqsEvent(records), lambdaContext()));

    // The 404 and the invalid body are quarantined and acknowledged; the 500 is reported.
    expect(result.batchItemFailures).toEqual([{ itemIdentifier: byBody('"down"').messageId }]);
    const logs = lines.filter((line) => typeof line.message === 'string');
    const count = (message: string) => logs.filter((line) => line.message === message).length;
    expect(logs.find((line) => line.message === 'delivery failed' && line.eventId === 'down')).toMatchObject({
      level: 'WARN',
      messageId: byBody('"down"').messageId,
      endpoint: 'beta',
      kind: 'transient',
      status: 500,
      attempts: 3,
    });
    expect(logs.find((line) => line.message === 'delivery failed' && line.eventId === 'refused')).toMatchObject({
      endpoint: 'beta',
      kind: 'rejected',
      status: 404,
      attempts: 1,
    });
    expect(logs.find((line) => line.message === 'invalid record')).toMatchObject({
      messageId: byBody('nope').messageId,
      reason: 'not-json',
    });
    expect(count('record quarantined')).toBe(2);
    expect(logs.filter((line) => line.message === 'batch processed')).toEqual([
      expect.objectContaining({ records: 8, acknowledged: 7, failed: 1, invalid: 1, rejected: 1, quarantined: 2 }),
    ]);
    // One line per failure and per quarantined record, one summary: the five successes write nothing.
    expect(logs).toHaveLength(2 + 1 + 2 + 1);
    expect(lines.some((line) => JSON.stringify(line).includes(secret))).toBe(false);

    const emf = lines.filter((line) => '_aws' in line);
    const forEndpoint = (name: string) => emf.find((line) => line.endpoint === name);
    expect(forEndpoint('alpha')).toMatchObject({ DeliverySucceeded: 7, DeliveryFailed: 0 });
    expect(forEndpoint('beta')).toMatchObject({ DeliverySucceeded: 5, DeliveryFailed: 2, DeliveryRetries: 2 });
    expect(emf.find((line) => 'RecordsAcknowledged' in line)).toMatchObject({
      RecordsAcknowledged: 7,
      RecordsFailed: 1,
      RecordsInvalid: 1,
      RecordsQuarantined: 2,
      BackoffErrors: 0,
      QuarantineErrors: 0,
    });
  });

  it('answers before the deadline and sums up the deliveries it cut off in one line per endpoint', async () => {
    beta.respond(() => ({ hang: true }));
    const handler = await loadHandler({
      ENDPOINTS: `alpha=${alpha.url},beta=${beta.url}`,
      DEADLINE_MARGIN_MS: '500',
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
    const records = Array.from({ length: 30 }, (_, i) => sqsRecord(JSON.stringify(cloudEvent(`cut-${i}`))));
    const context = lambdaContext(1500);
    const { result, lines } = await captureOutput(() => handler(sqsEvent(records), context));
    expect(context.getRemainingTimeInMillis()).toBeGreaterThan(0);
    expect(result.batchItemFailures).toHaveLength(30);
    const messages = lines.map((line) => line.message);
    expect(messages).not.toContain('delivery failed');
    expect(lines.filter((line) => line.message === 'deliveries cut off by the deadline')).toEqual([
      expect.objectContaining({ endpoint: 'beta', kind: 'aborted', records: 30 }),
    ]);
    expect(lines.find((line) => line.message === 'batch processed')).toMatchObject({ deadlineAborted: true });
  });

  it('lists every record when the whole batch fails rather than throwing', async () => {
    const handler = await loadHandler({ ENDPOINTS: `alpha=${alpha.url}` });
    const records = [sqsRecord(''), sqsRecord('{}')];
    const response = await handler(sqsEvent(records), lambdaContext());
    expect(response.batchItemFailures.map((item) => item.itemIdentifier).sort()).toEqual(
      records.map((record) => record.messageId).sort(),
    );
  });
});
