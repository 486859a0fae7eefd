import { createHash } from 'node:crypto';
import { SqsSchema } from '@aws-lambda-powertools/parser/schemas/sqs';
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EventSourceConfigError,
  type InvocationReport,
  SqsEventSource,
  type SqsHandler,
} from '../../infra/local/event-source';
import { type LocalSqs, startLocalSqs } from '../../infra/local/sqs-server';

/** Polls until the condition holds; fails the test with `what` after the bound. */
async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

let sqs: LocalSqs;
let source: SqsEventSource | undefined;
let reports: InvocationReport[];

beforeEach(async () => {
  // A short visibility timeout so that kept messages come back within the test.
  sqs = await startLocalSqs({ visibilityTimeoutS: 1, maxReceiveCount: 5 });
  reports = [];
});

afterEach(async () => {
  await source?.stop();
  source = undefined;
  await sqs.close();
});

function run(handler: SqsHandler, options: Partial<ConstructorParameters<typeof SqsEventSource>[0]> = {}) {
  source = new SqsEventSource({
    client: sqs.client,
    queue: sqs.queue,
    handler,
    pollWaitS: 0,
    onInvocation: (report) => reports.push(report),
    ...options,
  });
  source.start();
  return source;
}

async function send(...bodies: string[]): Promise<string[]> {
  const response = await sqs.client.send(
    new SendMessageBatchCommand({
      QueueUrl: sqs.queue.url,
      Entries: bodies.map((body, i) => ({ Id: String(i), MessageBody: body })),
    }),
  );
  return bodies.map((_, i) => response.Successful!.find((entry) => entry.Id === String(i))!.MessageId!);
}

async function messagesOnQueue(url = sqs.queue.url): Promise<number> {
  const depth = await sqs.depth(url);
  return depth.visible + depth.inFlight + depth.delayed;
}

describe('SqsEventSource builds the event and context like Lambda', () => {
  it('passes each message as an SQSRecord with Lambda-shaped attributes, message attributes and checksums', async () => {
    const sent = await sqs.client.send(
      new SendMessageCommand({
        QueueUrl: sqs.queue.url,
        MessageBody: '{"hello":"world"}',
        MessageAttributes: {
          tenant: { DataType: 'String', StringValue: 'acme' },
          priority: { DataType: 'Number', StringValue: '3' },
          blob: { DataType: 'Binary', BinaryValue: Buffer.from('bytes') },
        },
      }),
    );
    const events: { event: SQSEvent; context: Context }[] = [];
    run(
      async (event, context) => {
        events.push({ event, context });
        return { batchItemFailures: [] };
      },
      { functionTimeoutMs: 7000, functionName: 'ingest-test' },
    );
    await waitFor('one invocation', () => reports.length === 1);

    const { event, context } = events[0]!;
    expect(SqsSchema.safeParse(event).success).toBe(true);
    const [record] = event.Records;
    expect(record).toEqual({
      messageId: sent.MessageId,
      receiptHandle: expect.any(String),
      body: '{"hello":"world"}',
      attributes: {
        ApproximateReceiveCount: '1',
        SentTimestamp: expect.stringMatching(/^\d{13}$/),
        SenderId: expect.any(String),
        ApproximateFirstReceiveTimestamp: expect.stringMatching(/^\d{13}$/),
      },
      messageAttributes: {
        tenant: { stringValue: 'acme', stringListValues: [], binaryListValues: [], dataType: 'String' },
        priority: { stringValue: '3', stringListValues: [], binaryListValues: [], dataType: 'Number' },
        blob: {
          binaryValue: Buffer.from('bytes').toString('base64'),
          stringListValues: [],
          binaryListValues: [],
          dataType: 'Binary',
        },
      },
      md5OfBody: createHash('md5').update('{"hello":"world"}').digest('hex'),
      md5OfMessageAttributes: sent.MD5OfMessageAttributes,
      eventSource: 'aws:sqs',
      eventSourceARN: `arn:aws:sqs:us-east-1:123456789012:${sqs.queue.name}`,
      awsRegion: 'us-east-1',
    });
    expect(Object.keys(record!.attributes)).toEqual([
      'ApproximateReceiveCount',
      'SentTimestamp',
      'SenderId',
      'ApproximateFirstReceiveTimestamp',
    ]);
    expect(context.functionName).toBe('ingest-test');
    expect(context.invokedFunctionArn).toBe('arn:aws:lambda:us-east-1:123456789012:function:ingest-test');
    expect(context.awsRequestId).toBe(reports[0]!.requestId);
    const remaining = context.getRemainingTimeInMillis();
    expect(remaining).toBeGreaterThan(0);
    expect(remaining).toBeLessThanOrEqual(7000);
  });

  it('adds SequenceNumber, MessageGroupId and MessageDeduplicationId for a FIFO queue', async () => {
    const created = await sqs.client.send(
      new CreateQueueCommand({ QueueName: 'orders.fifo', Attributes: { FifoQueue: 'true' } }),
    );
    const url = created.QueueUrl!;
    const arn = (await sqs.client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] })))
      .Attributes!.QueueArn!;
    await sqs.client.send(
      new SendMessageCommand({ QueueUrl: url, MessageBody: 'a', MessageGroupId: 'g1', MessageDeduplicationId: 'd1' }),
    );
    const events: SQSEvent[] = [];
    run(
      async (event) => {
        events.push(event);
      },
      { queue: { url, arn } },
    );
    await waitFor('one invocation', () => reports.length === 1);
    const attributes = events[0]!.Records[0]!.attributes;
    expect(attributes).toMatchObject({ MessageGroupId: 'g1', MessageDeduplicationId: 'd1' });
    expect(attributes.SequenceNumber).toMatch(/^\d+$/);
    expect(events[0]!.Records[0]!.eventSourceARN).toBe('arn:aws:sqs:us-east-1:123456789012:orders.fifo');
  });
});

describe('SqsEventSource acknowledges like Lambda with ReportBatchItemFailures', () => {
  it('deletes only the acknowledged messages and redelivers the failed one after the visibility timeout', async () => {
    const [keep, ack1, ack2] = await send('keep', 'ack-1', 'ack-2');
    const seen: { id: string; count: string }[] = [];
    run(
      async (event): Promise<SQSBatchResponse> => {
        for (const r of event.Records) seen.push({ id: r.messageId, count: r.attributes.ApproximateReceiveCount });
        return {
          batchItemFailures: event.Records.filter((r) => r.body === 'keep').map((r) => ({
            itemIdentifier: r.messageId,
          })),
        };
      },
      // No batching window: each batch is one receive, so the redelivery is the message's second receive. A window
      // as long as the 1 s visibility timeout could legitimately receive it a third time within the same batch
      // (newest receipt handle kept), as Lambda could; AWS asks for a visibility timeout well above the window.
      { batchSize: 3, maximumBatchingWindowS: 0, concurrency: 1 },
    );
    await waitFor('the first invocation', () => reports.length >= 1);
    // The three were on the queue before polling started: one receive returns them all.
    expect(reports[0]).toMatchObject({ outcome: 'partial', records: 3, acknowledged: 2, failed: 1 });
    // The failed message comes back, received a second time; the acknowledged ones never do.
    await waitFor('the redelivery', () => seen.some((s) => s.id === keep && s.count === '2'));
    expect(seen.filter((s) => s.id === ack1 || s.id === ack2)).toHaveLength(2);
    expect(source!.stats.redelivered).toBeGreaterThanOrEqual(1);
  });

  it('keeps the whole batch when the handler throws', async () => {
    const ids = await send('a', 'b');
    let calls = 0;
    const counts: string[] = [];
    run(
      async (event) => {
        calls++;
        if (calls === 1) throw new Error('boom');
        for (const r of event.Records) counts.push(r.attributes.ApproximateReceiveCount);
        return undefined;
      },
      { batchSize: 2, maximumBatchingWindowS: 1, concurrency: 1 },
    );
    await waitFor('the failed invocation', () => reports.length >= 1);
    expect(reports[0]).toMatchObject({ outcome: 'error', acknowledged: 0, failed: 2, error: 'Error: boom' });
    // Both come back (receive count 2) and are then deleted by a successful invocation.
    await waitFor('both redelivered and deleted', async () => counts.length === 2 && (await messagesOnQueue()) === 0);
    expect(counts).toEqual(['2', '2']);
    expect(ids).toHaveLength(2);
  });

  it('keeps the whole batch when batchItemFailures names a message that is not in the batch', async () => {
    await send('a', 'b');
    run(async () => ({ batchItemFailures: [{ itemIdentifier: 'not-a-message-of-this-batch' }] }), {
      batchSize: 2,
      maximumBatchingWindowS: 1,
      concurrency: 1,
    });
    await waitFor('one invocation', () => reports.length >= 1);
    expect(reports[0]).toMatchObject({ outcome: 'invalid-response', acknowledged: 0, failed: 2 });
    expect(reports[0]!.error).toContain('not-a-message-of-this-batch');
    expect(await messagesOnQueue()).toBe(2);
  });

  it('keeps the whole batch when an itemIdentifier is empty or missing', async () => {
    await send('a');
    const answers: unknown[] = [{ batchItemFailures: [{ itemIdentifier: '' }] }, { batchItemFailures: [{ id: 'x' }] }];
    run(async () => answers.shift() as SQSBatchResponse);
    await waitFor('two invocations', () => reports.length >= 2);
    expect(reports.slice(0, 2).map((r) => r.outcome)).toEqual(['invalid-response', 'invalid-response']);
  });

  it('deletes the whole batch when the answer is empty (undefined, {} or an empty list)', async () => {
    await send('a', 'b', 'c');
    const answers: unknown[] = [undefined, {}, { batchItemFailures: [] }];
    run(async () => answers.shift() as SQSBatchResponse, { batchSize: 1 });
    await waitFor('three invocations', () => reports.length >= 3);
    expect(reports.map((r) => r.outcome)).toEqual(['success', 'success', 'success']);
    await waitFor('an empty queue', async () => (await messagesOnQueue()) === 0);
  });

  it('keeps the whole batch when the handler does not answer within the function timeout', async () => {
    await send('slow');
    const release = gate();
    run(
      async () => {
        await release.promise;
        return { batchItemFailures: [] };
      },
      { functionTimeoutMs: 200 },
    );
    await waitFor('the timed-out invocation', () => reports.length >= 1);
    release.open();
    expect(reports[0]).toMatchObject({ outcome: 'timeout', acknowledged: 0, failed: 1 });
    expect(reports[0]!.error).toContain('Task timed out after 0.20 seconds');
    expect(source!.stats.timeouts).toBe(1);
  });

  it('dead-letters a message the handler keeps failing after maxReceiveCount receives', async () => {
    await sqs.close();
    sqs = await startLocalSqs({ visibilityTimeoutS: 1, maxReceiveCount: 2 });
    const [id] = await send('poison');
    run(async (event) => ({ batchItemFailures: event.Records.map((r) => ({ itemIdentifier: r.messageId })) }));
    await waitFor('the message in the DLQ', async () => (await messagesOnQueue(sqs.dlq.url)) === 1);
    expect(reports.map((r) => r.outcome)).toEqual(['partial', 'partial']);
    expect(await messagesOnQueue()).toBe(0);
    const moved = await sqs.client.send(new ReceiveMessageCommand({ QueueUrl: sqs.dlq.url, WaitTimeSeconds: 0 }));
    expect(moved.Messages?.[0]?.MessageId).toBe(id);
  });
});

describe('SqsEventSource polling', () => {
  it('runs its pollers concurrently, one invocation each', async () => {
    await send('1', '2', '3');
    const all = gate();
    let running = 0;
    let peak = 0;
    run(
      async () => {
        running++;
        peak = Math.max(peak, running);
        if (running === 3) all.open();
        await all.promise;
        running--;
        return undefined;
      },
      { concurrency: 3, batchSize: 1, functionTimeoutMs: 20_000 },
    );
    await waitFor('three invocations', () => reports.length === 3);
    expect(peak).toBe(3);
  });

  it('fills a batch over several ReceiveMessage calls within the batching window', async () => {
    const bodies = Array.from({ length: 25 }, (_, i) => `m${i}`);
    for (let i = 0; i < bodies.length; i += 10) await send(...bodies.slice(i, i + 10));
    const sizes: number[] = [];
    // One poller: with two, each would hold part of the messages while its window stays open.
    run(
      async (event) => {
        sizes.push(event.Records.length);
      },
      { batchSize: 25, maximumBatchingWindowS: 5, concurrency: 1 },
    );
    await waitFor('the invocation', () => reports.length >= 1);
    expect(sizes[0]).toBe(25);
  });

  it('invokes with fewer records than the batch size once the window closes', async () => {
    await send('only-1', 'only-2');
    const sizes: number[] = [];
    run(
      async (event) => {
        sizes.push(event.Records.length);
      },
      { batchSize: 50, maximumBatchingWindowS: 1, concurrency: 1 },
    );
    await waitFor('the invocation', () => reports.length >= 1);
    expect(sizes).toEqual([2]);
  });

  it('refuses a batch size over 10 without a batching window, as Lambda does', () => {
    expect(
      () => new SqsEventSource({ client: sqs.client, queue: sqs.queue, handler: async () => undefined, batchSize: 11 }),
    ).toThrow(EventSourceConfigError);
    expect(
      () => new SqsEventSource({ client: sqs.client, queue: sqs.queue, handler: async () => undefined, batchSize: 11 }),
    ).toThrow(/at least 1 s/);
  });

  it('stop() lets the running invocation finish and acknowledges it', async () => {
    await send('in-flight');
    const release = gate();
    const started = gate();
    run(async () => {
      started.open();
      await release.promise;
      return undefined;
    });
    await started.promise;
    const stopped = source!.stop();
    release.open();
    await stopped;
    expect(reports).toMatchObject([{ outcome: 'success', acknowledged: 1 }]);
    expect(await messagesOnQueue()).toBe(0);
  });
});

describe('SqsEventSource in-flight ceiling', () => {
  /** A queue whose failed messages stay in flight for the whole test. */
  async function longVisibilityQueue(): Promise<{ url: string; arn: string }> {
    const url = (
      await sqs.client.send(new CreateQueueCommand({ QueueName: 'held', Attributes: { VisibilityTimeout: '120' } }))
    ).QueueUrl!;
    const { Attributes } = await sqs.client.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
    );
    await sqs.client.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: Array.from({ length: 10 }, (_, i) => ({ Id: String(i), MessageBody: `held-${i}` })),
      }),
    );
    await sqs.client.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: Array.from({ length: 10 }, (_, i) => ({ Id: String(i), MessageBody: `held-${i + 10}` })),
      }),
    );
    return { url, arn: Attributes!.QueueArn! };
  }

  it('never holds more than the ceiling in flight, and receives nothing more at it', async () => {
    const queue = await longVisibilityQueue();
    const seen = new Set<string>();
    run(
      async (event) => {
        for (const record of event.Records) seen.add(record.messageId);
        return { batchItemFailures: event.Records.map((record) => ({ itemIdentifier: record.messageId })) };
      },
      { queue, inflightCeiling: 7, concurrency: 3, batchSize: 10 },
    );
    // Several empty receives at the ceiling: the pollers kept asking and got nothing.
    await waitFor('receives refused at the ceiling', () => source!.stats.ceilingHits >= 6 || seen.size > 7);
    expect(seen.size).toBe(7);
    expect(source!.stats.received).toBe(7);
    expect((await sqs.depth(queue.url)).inFlight).toBe(7);
    expect(source!.stats.maxInFlight).toBe(7);
  });

  it('receives again once acknowledged messages free places, so every message is delivered', async () => {
    await send(...Array.from({ length: 10 }, (_, i) => `a${i}`));
    await send(...Array.from({ length: 10 }, (_, i) => `b${i}`));
    const seen = new Set<string>();
    run(
      async (event) => {
        for (const record of event.Records) seen.add(record.body);
      },
      { inflightCeiling: 3, concurrency: 2 },
    );
    await waitFor('every message delivered', () => seen.size === 20);
    expect(source!.stats.maxInFlight).toBeLessThanOrEqual(3);
    expect(Math.max(...reports.map((report) => report.records))).toBeLessThanOrEqual(3);
  });

  it('refuses a ceiling that is not a whole number from 1', () => {
    expect(
      () =>
        new SqsEventSource({
          client: sqs.client,
          queue: sqs.queue,
          handler: async () => undefined,
          inflightCeiling: 0,
        }),
    ).toThrow(/inflightCeiling: 0 is not a whole number/);
  });
});

describe('startLocalSqs', () => {
  it('counts receives like SQS: a visibility change is not a receive', async () => {
    await send('x');
    const first = await sqs.client.send(
      new ReceiveMessageCommand({ QueueUrl: sqs.queue.url, AttributeNames: ['All'], WaitTimeSeconds: 0 }),
    );
    await sqs.client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: sqs.queue.url,
        ReceiptHandle: first.Messages![0]!.ReceiptHandle!,
        VisibilityTimeout: 0,
      }),
    );
    let count: string | undefined;
    await waitFor('the second receive', async () => {
      const again = await sqs.client.send(
        new ReceiveMessageCommand({ QueueUrl: sqs.queue.url, AttributeNames: ['All'], WaitTimeSeconds: 0 }),
      );
      count = again.Messages?.[0]?.Attributes?.ApproximateReceiveCount;
      return count !== undefined;
    });
    expect(count).toBe('2');
  });
});
