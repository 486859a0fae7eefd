import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { TestEndpoint } from '../support/endpoints';
import { cloudEvent, eventRecord, lambdaContext, sqsEvent, sqsRecord } from '../support/events';

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
  vi.resetModules();
  process.env = { ...saved };
});

async function loadHandler(env: Record<string, string>): Promise<Handler> {
  Object.assign(process.env, env);
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
    beta.respond((request) => ({ status: request.eventId === 'refused' ? 404 : 200 }));
    const handler = await loadHandler({
      ENDPOINTS: `alpha=${alpha.url},beta=${beta.url}`,
      POWERTOOLS_LOG_LEVEL: 'INFO',
      POWERTOOLS_METRICS_DISABLED: 'false',
    });
    const secret = 'card-4111-1111';
    const refused = sqsRecord(JSON.stringify(cloudEvent('refused', { data: { secret } })));
    const records = [refused, ...Array.from({ length: 5 }, (_, i) => eventRecord(`ok-${i}`)), sqsRecord('nope')];
    const { result, lines } = await captureOutput(() => handler(sqsEvent(records), lambdaContext()));

    expect(result.batchItemFailures.map((item) => item.itemIdentifier).sort()).toEqual(
      [refused.messageId, records[6]!.messageId].sort(),
    );
    const logs = lines.filter((line) => typeof line.message === 'string');
    const failure = logs.find((line) => line.message === 'delivery failed');
    expect(failure).toMatchObject({
      level: 'WARN',
      messageId: refused.messageId,
      eventId: 'refused',
      endpoint: 'beta',
      kind: 'rejected',
      status: 404,
      attempts: 1,
    });
    expect(logs.find((line) => line.message === 'invalid record')).toMatchObject({
      messageId: records[6]!.messageId,
      reason: 'not-json',
    });
    const summaries = logs.filter((line) => line.message === 'batch processed');
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ records: 7, acknowledged: 5, failed: 2, invalid: 1 });
    // One line per failure and one summary: successes write nothing.
    expect(logs).toHaveLength(3);
    expect(lines.some((line) => JSON.stringify(line).includes(secret))).toBe(false);

    const emf = lines.filter((line) => '_aws' in line);
    const forEndpoint = (name: string) => emf.find((line) => line.endpoint === name);
    expect(forEndpoint('alpha')).toMatchObject({ DeliverySucceeded: 6, DeliveryFailed: 0 });
    expect(forEndpoint('beta')).toMatchObject({ DeliverySucceeded: 5, DeliveryFailed: 1 });
    expect(emf.find((line) => 'RecordsAcknowledged' in line)).toMatchObject({
      RecordsAcknowledged: 5,
      RecordsFailed: 2,
      RecordsInvalid: 1,
    });
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
