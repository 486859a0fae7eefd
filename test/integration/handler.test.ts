import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import { createQueue, LOCAL_AWS, localSqs, receiveAsRecords } from '../support/aws';
import { TestEndpoint } from '../support/endpoints';
import { cloudEvent, lambdaContext, sqsEvent, sqsRecord } from '../support/events';

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

/** Runs `fn` and returns the JSON lines it wrote (Powertools writes logs and EMF to stdout, warnings to stderr). */
async function captureOutput<T>(fn: () => Promise<T>): Promise<{ result: T; lines: Record<string, unknown>[] }> {
  const chunks: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  };
  const spies = [
    vi.spyOn(process.stdout, 'write').mockImplementation(capture),
    vi.spyOn(process.stderr, 'write').mockImplementation(capture),
  ];
  try {
    const result = await fn();
    const lines = chunks
      .join('')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    return { result, lines };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
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
      status: request.eventId === 'refused' ? 422 : request.eventId === 'down' ? 500 : 200,
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

    // The 422 and the invalid body are quarantined and acknowledged; the 500 is reported.
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
      status: 422,
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
      DEADLINE_MARGIN_MS: '2500',
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
    const records = Array.from({ length: 30 }, (_, i) => sqsRecord(JSON.stringify(cloudEvent(`cut-${i}`))));
    // Deliveries stop at 1.5 s, side effects at 2.75 s: 1.25 s of room for the answer on a loaded 2-core machine.
    const context = lambdaContext(4000);
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

  it('says cold_start: true on the first invocation and false on every line of a warm one (issue 9, defect 13)', async () => {
    beta.respond(() => ({ status: 500 }));
    // As Lambda sets it; Powertools reads it when the logger is created, at cold start.
    const handler = await loadHandler({
      ENDPOINTS: `alpha=${alpha.url},beta=${beta.url}`,
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
      DELIVERY_MAX_ATTEMPTS: '1',
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
    const batch = () => sqsEvent(Array.from({ length: 3 }, (_, i) => sqsRecord(JSON.stringify(cloudEvent(`c-${i}`)))));
    const cold = await captureOutput(() => handler(batch(), lambdaContext()));
    const warm = await captureOutput(() => handler(batch(), lambdaContext()));
    const logs = (lines: Record<string, unknown>[]) => lines.filter((line) => typeof line.message === 'string');
    // Per-record lines (child loggers) and the batch summary (the parent) alike.
    expect(logs(cold.lines).filter((line) => line.message === 'delivery failed')).toHaveLength(3);
    expect(logs(cold.lines).map((line) => line.cold_start)).toEqual(logs(cold.lines).map(() => true));
    expect(logs(warm.lines).filter((line) => line.message === 'delivery failed')).toHaveLength(3);
    expect(logs(warm.lines).map((line) => line.cold_start)).toEqual(logs(warm.lines).map(() => false));
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
