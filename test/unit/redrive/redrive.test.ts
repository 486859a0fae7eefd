import { type ChildProcess, spawn } from 'node:child_process';
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  type GetQueueAttributesResult,
  type ListMessageMoveTasksResult,
  type ListMessageMoveTasksResultEntry,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  type ReceiveMessageResult,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { afterAll, describe, expect, inject, it, vi } from 'vitest';
import { processBatch } from '../../../lib/batch/batch';
import { parseEvent, type ValidEvent } from '../../../lib/event/event';
import {
  keepHidden,
  REDRIVE_MARKER,
  RedriveError,
  type RedriveOptions,
  type RedriveSummary,
  redrive,
  SqsCallTimeoutError,
  sourceArnOf,
} from '../../../lib/redrive';
// A pure function of the redrive's start, tested on its own (the door, lib/redrive/index.ts, does not export it).
import { cutoffOf } from '../../../lib/redrive/start';
import { createLedger } from '../../../lib/settle/ledger';
import { createQuarantine, QUARANTINE_ATTRIBUTES } from '../../../lib/settle/quarantine';
import {
  createLedgerTable,
  createQueue,
  createQueueWithDlq,
  LOCAL_AWS,
  type LocalQueue,
  localDynamoDb,
  localSqs,
  pollUntil,
  receiveAsRecords,
  receiveAll as receiveVisible,
  sendMessages,
  toLambdaRecord,
} from '../../support/aws';
import { cloudEvent } from '../../support/events';
import { sqsProxy } from '../../support/sqs-proxy';

const sqs = localSqs();
const dynamodb = localDynamoDb();
// Tests that assert moves long-poll before concluding the source is empty: local SQS's short poll can answer empty under load.
const EMPTY_WAIT_S = 1;
afterAll(() => {
  sqs.destroy();
  dynamodb.destroy();
});

/**
 * Every message visible now, as receiveAll, but it ends only on an empty long poll (1 s): local SQS's short poll
 * answers empty when its 40 ms timer beats its 10 ms scan, which a loaded machine makes happen.
 */
async function receiveAll(
  client: SQSClient,
  queueUrl: string,
  options: Parameters<typeof receiveVisible>[2] = {},
): Promise<Message[]> {
  const all = await receiveVisible(client, queueUrl, options);
  const seen = new Set(all.map((m) => m.MessageId));
  for (;;) {
    const { Messages = [] } = await client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        VisibilityTimeout: options.visibilityTimeoutS ?? 30,
        MessageAttributeNames: ['All'],
        AttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const fresh = Messages.filter((m) => !seen.has(m.MessageId));
    if (fresh.length === 0) return all;
    for (const m of fresh) seen.add(m.MessageId);
    all.push(...fresh, ...(await receiveVisible(client, queueUrl, options)).filter((m) => !seen.has(m.MessageId)));
    for (const m of all) seen.add(m.MessageId);
  }
}

const text = (value: string): MessageAttributeValue => ({ DataType: 'String', StringValue: value });
const bodies = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
const sorted = (values: (string | undefined)[]) => [...values].sort();

/** Counts messages on the queue, in flight included (local SQS counts both in ApproximateNumberOfMessages). */
async function count(queue: LocalQueue): Promise<number> {
  const { Attributes } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queue.url, AttributeNames: ['ApproximateNumberOfMessages'] }),
  );
  return Number(Attributes?.ApproximateNumberOfMessages);
}

/**
 * Waits until the queue counts n messages: a move task moves what SQS counts at its start, and local SQS, like SQS,
 * may count a message a moment after SendMessage returns.
 */
async function counted(queue: LocalQueue, n: number): Promise<void> {
  await pollUntil(
    `${queue.name} to count ${n} message(s)`,
    async () => ((await count(queue)) >= n ? true : undefined),
    {
      intervalMs: 10,
    },
  );
}

describe.concurrent('redrive on local SQS', () => {
  it('moves everything to --to with the loop when the source is not a DLQ, attributes included', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    const all = bodies('m', 25);
    await sendMessages(
      sqs,
      from.url,
      all.map((body) => ({ body, attributes: { tenant: text('acme') } })),
    );

    const before = Date.now();
    const warnings: string[] = [];
    const summary = await redrive(sqs, {
      from: from.url,
      to: to.url,
      emptyWaitS: EMPTY_WAIT_S,
      onWarning: (warning) => warnings.push(warning),
    });
    const took = Date.now() - before;

    // The run's duration is part of the summary the CLI prints: it lies within the call's own.
    expect(summary.durationMs).toBeGreaterThanOrEqual(0);
    expect(summary.durationMs).toBeLessThanOrEqual(took);
    expect(summary).toMatchObject({
      method: 'loop',
      moved: 25,
      failed: 0,
      interrupted: false,
      complete: true,
      remaining: 0,
    });
    expect(summary.destinations).toEqual({ [to.url]: 25 });
    // Nothing left behind to release, so nothing to warn about (a release of what it moved would fail and warn).
    expect(warnings).toEqual([]);
    const landed = await receiveAll(sqs, to.url);
    expect(sorted(landed.map((m) => m.Body))).toEqual(sorted(all));
    expect(landed.every((m) => m.MessageAttributes?.tenant?.StringValue === 'acme')).toBe(true);
  });

  it('uses an SQS message move task when asked, and warns that it cannot mark what it moves', async () => {
    const { dlq } = await createQueueWithDlq(sqs, 'orders');
    const to = await createQueue(sqs, 'orders-retry');
    const all = bodies('dead', 12);
    await sendMessages(
      sqs,
      dlq.url,
      all.map((body) => ({ body })),
    );
    const progress: number[] = [];
    const warnings: string[] = [];

    await counted(dlq, 12);
    const summary = await redrive(sqs, {
      from: dlq.url,
      to: to.url,
      method: 'move-task',
      pollIntervalMs: 100,
      onProgress: ({ moved }) => progress.push(moved),
      onWarning: (warning) => warnings.push(warning),
    });

    expect(summary).toMatchObject({ method: 'move-task', moved: 12, interrupted: false, remaining: 0 });
    expect(warnings).toEqual([
      'a move task cannot mark what it moves (redrive.from): messages SQS dead-lettered reach every endpoint again ' +
        'unless DELIVERY_LEDGER_MODE is every-delivery; the loop (--method loop, the default) marks them',
    ]);
    expect(progress.at(-1)).toBe(12);
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(sorted(all));
  });

  it('without --to sends each quarantined message back to the queue it came from', async () => {
    const [orders, payments, quarantineQueue] = await Promise.all([
      createQueue(sqs, 'orders'),
      createQueue(sqs, 'payments'),
      createQueue(sqs, 'quarantine'),
    ]);
    const records = [
      ...(await receiveAsRecords(sqs, orders, [{ body: 'order-1' }, { body: 'order-2' }])),
      ...(await receiveAsRecords(sqs, payments, [{ body: 'payment-1' }])),
    ];
    await createQuarantine(sqs, quarantineQueue.url).send(
      records.map((record) => ({
        record,
        reason: 'rejected-by-endpoint',
        detail: 'HTTP 409',
        endpoint: 'audit',
        status: 409,
      })),
      AbortSignal.timeout(10_000),
    );
    // The pipeline acknowledges quarantined records: only the redriven copies may show up.
    for (const queue of [orders, payments]) {
      const ours = records.filter((r) => r.eventSourceARN === queue.arn);
      await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queue.url,
          Entries: ours.map((r, i) => ({ Id: String(i), ReceiptHandle: r.receiptHandle })),
        }),
      );
    }
    await sendMessages(sqs, quarantineQueue.url, [{ body: 'no origin' }]);

    const summary = await redrive(sqs, { from: quarantineQueue.url, emptyWaitS: EMPTY_WAIT_S, visibilityTimeoutS: 1 });

    expect(summary).toMatchObject({ method: 'loop', moved: 3, failed: 1 });
    expect(summary.failures[0]!.error).toMatch(/pass --to/);
    const backInOrders = await receiveAll(sqs, orders.url);
    expect(sorted(backInOrders.map((m) => m.Body))).toEqual(['order-1', 'order-2']);
    expect(backInOrders[0]!.MessageAttributes?.[QUARANTINE_ATTRIBUTES.reason]?.StringValue).toBe(
      'rejected-by-endpoint',
    );
    expect((await receiveAll(sqs, payments.url)).map((m) => m.Body)).toEqual(['payment-1']);
    // The message with no origin stays in the quarantine queue.
    const left = await pollUntil('the unroutable message to be visible again', async () => {
      const messages = await receiveAll(sqs, quarantineQueue.url);
      return messages.length > 0 ? messages : undefined;
    });
    expect(left.map((m) => m.Body)).toEqual(['no origin']);
  });

  it('moves at most --max messages and leaves the rest', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    await sendMessages(
      sqs,
      from.url,
      bodies('m', 17).map((body) => ({ body })),
    );
    await counted(from, 17);
    const starts: { method: string; total: number }[] = [];
    const summary = await redrive(sqs, {
      from: from.url,
      to: to.url,
      max: 12,
      emptyWaitS: EMPTY_WAIT_S,
      onStart: (start) => starts.push(start),
    });
    expect(summary).toMatchObject({ method: 'loop', moved: 12, remaining: 5 });
    // The progress bar starts from what the run will move: --max, not the 17 the queue holds.
    expect(starts).toEqual([{ method: 'loop', total: 12 }]);
    expect(await receiveAll(sqs, to.url)).toHaveLength(12);
  });

  it('moves at most what the queue held at the start, even without --max (review finding 6)', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    await sendMessages(
      sqs,
      from.url,
      bodies('m', 5).map((body) => ({ body })),
    );
    let late: Promise<unknown> | undefined;
    const summary = await redrive(sqs, {
      from: from.url,
      to: to.url,
      method: 'loop',
      // Long enough a poll that, without the bound, the next receive would get the late messages.
      emptyWaitS: 1,
      // New poison arriving while the redrive runs belongs to the next run. Local SQS stamps messages with this
      // machine's clock (its Date header, to the second, would count what arrives in the first second as there).
      clockOffsetMs: 0,
      onProgress: () => {
        late ??= sendMessages(
          sqs,
          from.url,
          bodies('late', 10).map((body) => ({ body })),
        );
      },
    });
    await late;
    expect(summary).toMatchObject({ method: 'loop', moved: 5, failed: 0 });
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(bodies('m', 5));
  });

  it('moves every message that was there even when the queue counts none of them yet', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    const all = bodies('m', 23);
    await sendMessages(
      sqs,
      from.url,
      all.map((body) => ({ body })),
    );
    const stale = countingNone();
    try {
      const totals: number[] = [];
      const summary = await redrive(stale, {
        from: from.url,
        to: to.url,
        method: 'loop',
        emptyWaitS: EMPTY_WAIT_S,
        onProgress: ({ moved, total }) => totals.push(total - moved),
      });
      expect(summary).toMatchObject({ method: 'loop', moved: 23, failed: 0, arrivedLater: 0 });
      // The progress total grows with what was done: never below it, whatever the count said.
      expect(totals.every((left) => left === 0)).toBe(true);
    } finally {
      stale.destroy();
    }
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(sorted(all));
    expect(await receiveAll(sqs, from.url)).toEqual([]);
  });

  it('leaves what was sent after the start for the next run, visible at once, and counts it', async () => {
    const { from, to } = await parkedWith(bodies('old', 5));
    // New poison lands between the start and the first receive: an interleaving local SQS cannot be asked for, so
    // this real client of local SQS sends it just before its first ReceiveMessage.
    const client = localSqs();
    let late: Promise<unknown> | undefined;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'ReceiveMessageCommand') {
          late ??= sendMessages(
            sqs,
            from.url,
            bodies('new', 10).map((body) => ({ body })),
          );
          await late;
        }
        return next(args);
      },
      { step: 'initialize' },
    );
    try {
      // Local SQS stamps messages with this machine's clock: the offset is 0 (see the test above).
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0, clockOffsetMs: 0 });
      expect(summary).toMatchObject({ method: 'loop', moved: 5, failed: 0, arrivedLater: 10, remaining: 10 });
    } finally {
      client.destroy();
    }
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(bodies('old', 5));
    // Released when the run ended, not hidden until their visibility timeout runs out.
    expect(sorted((await receiveAll(sqs, from.url)).map((m) => m.Body))).toEqual(sorted(bodies('new', 10)));
  });

  it('stops after the batch in hand when interrupted, losing and duplicating nothing', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    const all = bodies('m', 40);
    await sendMessages(
      sqs,
      from.url,
      all.map((body) => ({ body })),
    );
    const controller = new AbortController();

    const summary = await redrive(sqs, {
      from: from.url,
      to: to.url,
      emptyWaitS: 0,
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });

    expect(summary).toMatchObject({ interrupted: true, moved: 10, remaining: 30 });
    const moved = (await receiveAll(sqs, to.url)).map((m) => m.Body);
    const stayed = (await receiveAll(sqs, from.url)).map((m) => m.Body);
    expect(moved).toHaveLength(10);
    expect(sorted([...moved, ...stayed])).toEqual(sorted(all));
  });
});

/**
 * A real client of local SQS that passes each answer's Date header through `see` first. Low priority: it runs inside
 * the redrive's own Date reader, so that reader gets what `see` returns.
 */
function clientSeeingDates(see: (date: string) => string): SQSClient {
  const client = localSqs();
  client.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      const headers = (result.response as { headers?: Record<string, string> }).headers;
      if (headers?.date) headers.date = see(headers.date);
      return result;
    },
    { step: 'deserialize', priority: 'low' },
  );
  return client;
}

/** Adds to `client` a step that passes each answer of `command` through `edit` first (a fault local SQS cannot produce). */
function editAnswers<T>(client: SQSClient, command: string, edit: (output: T) => void): SQSClient {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      if (context.commandName === command) edit(result.output as T);
      return result;
    },
    { step: 'initialize' },
  );
  return client;
}

/** The fault of a throttled SQS (local SQS does not fail on demand): the nth call of `name` throws. */
function failingCall(name: string, nth: number) {
  let calls = 0;
  return async (command: string | undefined, call: () => Promise<unknown>) => {
    if (command === name && ++calls === nth) throw new Error('throttled');
    return call();
  };
}

/**
 * A real client of local SQS that keeps the last entry of the first `command` batch from SQS and answers Failed for
 * it with `code`, as SQS does for an entry it refuses (local SQS never answers Failed). `refused()` is that entry;
 * the last, not the first, so that matching the answer to its entry by Id is what finds it.
 */
function refusingLastEntry(command: string, code: string, client = localSqs()) {
  let last: { Id?: string; MessageBody?: string } | undefined;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== command || last) return next(args);
      const input = args.input as { Entries?: { Id?: string; MessageBody?: string }[] };
      const kept = (input.Entries ?? []).slice(0, -1);
      last = input.Entries?.at(-1);
      const result = await next({ ...args, input: { ...input, Entries: kept } } as typeof args);
      const output = result.output as { Failed?: object[] };
      output.Failed = [...(output.Failed ?? []), { Id: last?.Id, SenderFault: false, Code: code, Message: 'injected' }];
      return result;
    },
    { step: 'initialize' },
  );
  return { client, refused: () => last };
}

/**
 * SQS's ApproximateNumberOfMessages can lag a minute behind; local SQS cannot be made to lag on demand, so this real
 * client of local SQS reads 0 from GetQueueAttributes, as a redrive started right after an incident may.
 */
function countingNone(): SQSClient {
  const stale = localSqs();
  stale.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      const { Attributes } = result.output as GetQueueAttributesResult;
      if (context.commandName === 'GetQueueAttributesCommand' && Attributes?.ApproximateNumberOfMessages)
        Attributes.ApproximateNumberOfMessages = '0';
      return result;
    },
    { step: 'initialize' },
  );
  return stale;
}

/** A source queue holding `messages` and an empty target queue. */
async function parkedWith(messages: string[]): Promise<{ from: LocalQueue; to: LocalQueue }> {
  const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
  await sendMessages(
    sqs,
    from.url,
    messages.map((body) => ({ body })),
  );
  return { from, to };
}

/**
 * A real client of local SQS that sends `late` to `queueUrl` just before its first ReceiveMessage (new poison landing
 * between the start and the first receive: an interleaving local SQS cannot be asked for), then runs `also` on each
 * command (the fault a test injects).
 */
function clientWithLateArrivals(
  queueUrl: string,
  late: string[],
  also?: (command: string | undefined, call: () => Promise<{ output: unknown }>) => Promise<unknown>,
): SQSClient {
  const client = localSqs();
  let sent: Promise<unknown> | undefined;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'ReceiveMessageCommand') {
        sent ??= sendMessages(
          sqs,
          queueUrl,
          late.map((body) => ({ body })),
        );
        await sent;
      }
      const call = () => next(args);
      if (!also) return call();
      return (await also(context.commandName, call)) as Awaited<ReturnType<typeof next>>;
    },
    { step: 'initialize' },
  );
  return client;
}

/** Redrives with the shared client as `options` say; returns the summary and the warnings. */
async function redriveWarned(options: RedriveOptions) {
  const warnings: string[] = [];
  const summary = await redrive(sqs, { ...options, onWarning: (warning) => warnings.push(warning) });
  return { summary, warnings };
}

/** Redrives `from` to `to` on `client` (then destroys it); returns the summary and the warnings. */
/** The fault: SQS refusing the first entry of each release (a receipt handle it no longer accepts), by spoiling it. */
function spoilingRelease(client: SQSClient): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Entries?: { ReceiptHandle?: string; VisibilityTimeout?: number }[] };
      const first = input.Entries?.[0];
      if (context.commandName === 'ChangeMessageVisibilityBatchCommand' && first?.VisibilityTimeout === 0)
        first.ReceiptHandle = 'spoilt';
      return next(args);
    },
    { step: 'initialize' },
  );
}

async function redriveWithWarnings(client: SQSClient, from: LocalQueue, to: LocalQueue, clockOffsetMs?: number) {
  const warnings: string[] = [];
  try {
    const summary = await redrive(client, {
      from: from.url,
      to: to.url,
      emptyWaitS: 0,
      ...(clockOffsetMs === undefined ? {} : { clockOffsetMs }),
      onWarning: (warning) => warnings.push(warning),
    });
    return { summary, warnings };
  } finally {
    client.destroy();
  }
}

describe('redrive keeps what it holds, and says when it could not finish (review 2)', () => {
  it('finding 1: keeps held and in-hand messages hidden past the visibility timeout while a send is slow', {
    timeout: 30_000,
  }, async () => {
    const { from, to } = await parkedWith(bodies('old', 5));
    const received = new Set<string>();
    const renewed = new Set<string>();
    let renewals = 0;
    let renewedTwice = () => {};
    const twice = new Promise<void>((resolve) => {
      renewedTwice = resolve;
    });
    let visibleDuringSend: Message[] | undefined;
    const client = clientWithLateArrivals(from.url, bodies('new', 5), async (command, call) => {
      if (command === 'SendMessageBatchCommand' && visibleDuringSend === undefined) {
        // The fault: a send that answers only after two renewals, longer than the 2 s visibility timeout (local SQS
        // answers at once). Synchronised on the renewals, not on a timer: looking right after one is within its 2 s.
        // The 10 s bound only turns "never renewed" into a failure instead of a hang.
        await Promise.race([twice, new Promise((resolve) => setTimeout(resolve, 10_000))]);
        // Visibility 0: looking must not hide anything from the run.
        visibleDuringSend = await receiveAll(sqs, from.url, { visibilityTimeoutS: 0 });
      }
      const result = (await call()) as { output: ReceiveMessageResult };
      if (command === 'ReceiveMessageCommand')
        for (const m of result.output.Messages ?? []) received.add(m.ReceiptHandle!);
      return result;
    });
    // Renewals (VisibilityTimeout 2, not the release's 0), counted once SQS answered them.
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Entries?: { ReceiptHandle?: string; VisibilityTimeout?: number }[] };
        const renewal =
          context.commandName === 'ChangeMessageVisibilityBatchCommand' && input.Entries?.[0]?.VisibilityTimeout === 2;
        const result = await next(args);
        if (renewal) {
          for (const entry of input.Entries ?? []) renewed.add(entry.ReceiptHandle!);
          if (++renewals === 2) renewedTwice();
        }
        return result;
      },
      { step: 'initialize' },
    );
    try {
      const summary = await redrive(client, {
        from: from.url,
        to: to.url,
        emptyWaitS: 0,
        clockOffsetMs: 0,
        visibilityTimeoutS: 2,
      });
      expect(renewals).toBeGreaterThanOrEqual(2);
      expect(visibleDuringSend?.map((m) => m.Body)).toEqual([]);
      // Every message the run received (the batch in hand and those held back) was renewed.
      expect([...received].filter((handle) => !renewed.has(handle))).toEqual([]);
      expect(summary).toMatchObject({ moved: 5, failed: 0, arrivedLater: 5, complete: true });
    } finally {
      client.destroy();
    }
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(bodies('old', 5));
    expect(sorted((await receiveAll(sqs, from.url)).map((m) => m.Body))).toEqual(bodies('new', 5));
  });

  it('finding 1: says it is incomplete when it stops because new messages keep arriving', async () => {
    const { from, to } = await parkedWith(bodies('old', 5));
    // New poison keeps arriving: 10 more before every receive.
    const client = clientWithLateArrivals(from.url, [], async (command, call) => {
      if (command === 'ReceiveMessageCommand') {
        await sendMessages(
          sqs,
          from.url,
          bodies('new', 10).map((body) => ({ body })),
        );
      }
      return call();
    });
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0, clockOffsetMs: 0 });
      expect(summary).toMatchObject({ moved: 5, failed: 0, interrupted: false, complete: false });
    } finally {
      client.destroy();
    }
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(bodies('old', 5));
  });

  it('finding 5: releases what it held when a receive fails mid-run', async () => {
    const { from, to } = await parkedWith(bodies('old', 5));
    const client = clientWithLateArrivals(from.url, bodies('new', 10), failingCall('ReceiveMessageCommand', 2));
    try {
      await expect(redrive(client, { from: from.url, to: to.url, emptyWaitS: 0, clockOffsetMs: 0 })).rejects.toThrow(
        new RedriveError(
          `cannot receive from ${from.url} after moving 5 message(s): Error: throttled; nothing was lost, run it again`,
        ),
      );
    } finally {
      client.destroy();
    }
    // The 5 held by the first receive are visible at once, not after the 60 s visibility timeout.
    expect(sorted((await receiveAll(sqs, from.url)).map((m) => m.Body))).toEqual(sorted(bodies('new', 10)));
  });

  it('a GetQueueAttributes that never answers at the start is given up after callTimeoutMs, named, and cancelled', async () => {
    const from = await createQueue(sqs, 'parked');
    // The fault: a connection that stalls (local SQS always answers).
    const { client, cancelled } = stalling('GetQueueAttributesCommand');
    try {
      await expect(redrive(client, { from: from.url, emptyWaitS: 0, callTimeoutMs: 500 })).rejects.toThrow(
        `cannot read the source queue ${from.url}: SqsCallTimeoutError: GetQueueAttributes: no answer from SQS within 0.5 s`,
      );
      // The stalled request is cancelled, not left holding a connection.
      expect(cancelled()).toBe(true);
    } finally {
      client.destroy();
    }
  });

  it('a final count SQS refuses leaves what is left unknown (NaN), the moves reported', async () => {
    const { from, to } = await parkedWith(bodies('old', 5));
    const client = localSqs();
    let counts = 0;
    // The fault: a throttled GetQueueAttributes after the moves (local SQS does not fail on demand).
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'GetQueueAttributesCommand' && ++counts === 2) throw new Error('throttled');
        return next(args);
      },
      { step: 'initialize' },
    );
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: EMPTY_WAIT_S });
      expect(summary).toMatchObject({ moved: 5, failed: 0, complete: true, remaining: Number.NaN });
    } finally {
      client.destroy();
    }
  });

  it('finding 5: releases the other batches when one release batch fails', async () => {
    const { from, to } = await parkedWith(bodies('old', 5));
    const client = clientWithLateArrivals(
      from.url,
      bodies('new', 25),
      failingCall('ChangeMessageVisibilityBatchCommand', 1),
    );
    const { summary, warnings } = await redriveWithWarnings(client, from, to, 0);
    expect(summary).toMatchObject({ moved: 5, arrivedLater: 25 });
    expect(warnings).toEqual([expect.stringMatching(/^10 message\(s\) this run left could not be made visible/)]);
    // 25 held, released 10 per call: the first 10 stay hidden until their timeout, the other 15 are back at once.
    expect(await receiveAll(sqs, from.url)).toHaveLength(15);
  });

  it("finding 4: does not believe a Date header far from this machine's clock, and warns", async () => {
    const { from, to } = await parkedWith(bodies('old', 5));
    // The fault: a Date header 10 minutes behind (a proxy or a broken clock; local SQS uses this machine's).
    const client = clientSeeingDates((date) => new Date(Date.parse(date) - 600_000).toUTCString());
    const { summary, warnings } = await redriveWithWarnings(client, from, to);
    // Believed, the header would put the start 10 minutes back and leave all 5 as "arrived later".
    expect(summary).toMatchObject({ moved: 5, arrivedLater: 0 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/SQS's clock .* is -60[01] s from this machine's/);
  });

  it('finding 4: leaves and counts a message without SentTimestamp rather than moving it', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    await sendMessages(sqs, from.url, [{ body: 'stamped' }, { body: 'unstamped' }]);
    const client = localSqs();
    // The fault: an answer without SentTimestamp (local SQS always sets it).
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        if (context.commandName === 'ReceiveMessageCommand') {
          for (const message of (result.output as ReceiveMessageResult).Messages ?? []) {
            if (message.Body === 'unstamped') delete message.Attributes?.SentTimestamp;
          }
        }
        return result;
      },
      { step: 'initialize' },
    );
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0 });
      expect(summary).toMatchObject({ moved: 1, arrivedLater: 1 });
    } finally {
      client.destroy();
    }
    expect((await receiveAll(sqs, to.url)).map((m) => m.Body)).toEqual(['stamped']);
  });

  it("finding 8: reads the start from SQS's Date header when no clock offset is given", async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    await sendMessages(
      sqs,
      from.url,
      bodies('m', 3).map((body) => ({ body })),
    );
    const dates: string[] = [];
    const client = clientSeeingDates((date) => {
      dates.push(date);
      return date;
    });
    const { summary, warnings } = await redriveWithWarnings(client, from, to);
    expect(summary).toMatchObject({ moved: 3, arrivedLater: 0, complete: true });
    expect(dates.length).toBeGreaterThan(0);
    expect(warnings).toEqual([]);
  });

  it("finding 8: believes a Date header within a minute of this machine's clock: what SQS stamped after it waits", async () => {
    const { from, to } = await parkedWith(bodies('m', 3));
    // The fault: SQS's clock 30 s behind ours (local SQS stamps with this machine's), so the 3 messages, stamped by
    // ours, were sent after the start as SQS counts it.
    const client = clientSeeingDates((date) => new Date(Date.parse(date) - 30_000).toUTCString());
    const { summary, warnings } = await redriveWithWarnings(client, from, to);
    expect(summary).toMatchObject({ moved: 0, arrivedLater: 3 });
    expect(warnings).toEqual([]);
  });

  it("finding 8: a message stamped at the start's last millisecond is moved, one stamped a millisecond later waits", async () => {
    const { from, to } = await parkedWith(['at', 'after']);
    let header: number | undefined;
    // SQS's clock 10 s behind ours (believed: within a minute), so the start is the header's second + 1 s.
    const client = clientSeeingDates((date) => {
      header ??= Date.parse(date) - 10_000;
      return new Date(header).toUTCString();
    });
    // The fault: SentTimestamps on that boundary (local SQS stamps with this machine's clock, at no chosen time).
    editAnswers<ReceiveMessageResult>(client, 'ReceiveMessageCommand', (output) => {
      for (const message of output.Messages ?? []) {
        const stamp = (header ?? 0) + 1_000 + (message.Body === 'after' ? 1 : 0);
        if (message.Attributes) message.Attributes.SentTimestamp = String(stamp);
      }
    });
    const { summary } = await redriveWithWarnings(client, from, to);
    expect(summary).toMatchObject({ moved: 1, arrivedLater: 1 });
    expect((await receiveAll(sqs, to.url)).map((m) => m.Body)).toEqual(['at']);
  });

  it('finding 8: an answer without a Date header takes the start from our clock (+ 5 s) and moves what was there', async () => {
    const { from, to } = await parkedWith(bodies('m', 3));
    // The fault: a proxy that drops the Date header (local SQS always sends it).
    const client = clientSeeingDates(() => '');
    const { summary, warnings } = await redriveWithWarnings(client, from, to);
    expect(summary).toMatchObject({ moved: 3, arrivedLater: 0 });
    expect(warnings).toEqual([]);
  });

  it("finding 4/8: the start on SQS's clock: the offset given, else the Date header's second, else ours + 5 s", () => {
    const startedAt = Date.parse('2026-05-01T10:00:00.400Z');
    const warnings: string[] = [];
    const options = { from: 'q', onWarning: (warning: string) => warnings.push(warning) };
    expect(cutoffOf({ ...options, clockOffsetMs: -250 }, startedAt, startedAt - 400)).toBe(startedAt - 250);
    expect(cutoffOf(options, startedAt, undefined)).toBe(startedAt + 5_000);
    // Within a minute: the header's second (rounded down) plus the second it covers.
    expect(cutoffOf(options, startedAt, startedAt - 400 - 59_000)).toBe(startedAt - 400 - 58_000);
    expect(cutoffOf(options, startedAt, startedAt + 60_000)).toBe(startedAt + 61_000);
    expect(warnings).toEqual([]);
    // Further: not believed, with a warning naming both clocks' difference.
    expect(cutoffOf(options, startedAt, startedAt - 60_001)).toBe(startedAt + 5_000);
    expect(cutoffOf(options, startedAt, startedAt + 120_000)).toBe(startedAt + 5_000);
    expect(warnings).toEqual([
      "SQS's clock (Date header 2026-05-01T09:59:00.399Z) is -60 s from this machine's: the start is taken from this machine's clock (± 5 s); check NTP or any proxy in between",
      "SQS's clock (Date header 2026-05-01T10:02:00.400Z) is 120 s from this machine's: the start is taken from this machine's clock (± 5 s); check NTP or any proxy in between",
    ]);
  });

  it('finding 4: without a warning handler (the library used directly) a far Date header still falls back, nothing thrown', () => {
    const startedAt = Date.parse('2026-05-01T10:00:00.400Z');
    expect(cutoffOf({ from: 'q' }, startedAt, startedAt + 120_000)).toBe(startedAt + 5_000);
  });

  it('finding 7: deletes a message SQS hands out again after it was moved, without sending it twice', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    const all = bodies('m', 15);
    await sendMessages(
      sqs,
      from.url,
      all.map((body) => ({ body })),
    );
    const client = localSqs();
    let first: Message | undefined;
    let receives = 0;
    // The fault: standard SQS delivering a deleted message again (at-least-once); local SQS never does.
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        if (context.commandName !== 'ReceiveMessageCommand') return result;
        const output = result.output as ReceiveMessageResult;
        receives++;
        if (receives === 1) first = output.Messages?.[0];
        else if (receives === 2 && first && output.Messages) output.Messages.unshift(first);
        return result;
      },
      { step: 'initialize' },
    );
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0 });
      expect(summary).toMatchObject({ moved: 15, failed: 0 });
    } finally {
      client.destroy();
    }
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(sorted(all));
  });
});

/**
 * A client of local SQS whose `nth` call of `commandName` never answers. The stall honours the abort signal the SDK
 * puts in the context, as the SDK's HTTP handler does; `cancelled()` says whether the caller aborted it.
 */
function stalling(commandName: string, nth = 1): { client: SQSClient; cancelled: () => boolean } {
  const client = localSqs();
  let calls = 0;
  let cancelled = false;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== commandName || ++calls !== nth) return next(args);
      const signal = (context as { __smithy_context?: { abortSignal?: AbortSignal } }).__smithy_context?.abortSignal;
      return new Promise<never>((_, reject) => {
        signal?.addEventListener(
          'abort',
          () => {
            cancelled = true;
            reject(new Error('aborted'));
          },
          { once: true },
        );
      });
    },
    { step: 'initialize' },
  );
  return { client, cancelled: () => cancelled };
}

const stallingOnce = (commandName: string): SQSClient => stalling(commandName).client;

/** Makes `client`'s later receives hand out the first message received again, as SQS's at-least-once delivery may. */
function handingOutAgain(client: SQSClient, isStandIn: (body: string | undefined) => boolean): void {
  let first: Message | undefined;
  // The fault: standard SQS delivering a moved message again; local SQS never does. Each real stand-in message becomes
  // such a copy, so the copy has a receipt handle of its own, as SQS's would.
  editAnswers<ReceiveMessageResult>(client, 'ReceiveMessageCommand', (output) => {
    first ??= output.Messages?.[0];
    for (const copy of output.Messages ?? [])
      if (first && isStandIn(copy.Body)) Object.assign(copy, { MessageId: first.MessageId, Body: first.Body });
  });
}

/** Ten attributes of its own: a message with no room left for the redrive marker. */
const TEN_ATTRIBUTES = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`a${i}`, text('x')]));

/** What `queue` still holds, visible or in flight: local SQS counts in-flight messages in ApproximateNumberOfMessages. */
async function held(queue: LocalQueue): Promise<number> {
  const { Attributes } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queue.url, AttributeNames: ['ApproximateNumberOfMessages'] }),
  );
  return Number(Attributes?.ApproximateNumberOfMessages);
}

// The call timeout of the stall tests: long enough that a loaded machine's local SQS answers every other call in it.
const STALL_MS = 2_000;
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('redrive gives up on a call SQS does not answer, and reports what it left (review 3)', () => {
  it('finding 1: a SendMessageBatch that never answers fails its messages, deletes none of them, releases them', async () => {
    const { from, to } = await parkedWith(bodies('m', 15));
    // The fault: a connection that stalls on one send (local SQS always answers).
    const client = stallingOnce('SendMessageBatchCommand');
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0, callTimeoutMs: 500 });
      expect(summary).toMatchObject({ moved: 5, failed: 10, complete: true, interrupted: false });
      expect(
        summary.failures.every((f) =>
          /^not known whether it reached .* \(SqsCallTimeoutError: SendMessageBatch: no answer from SQS within 0.5 s/.test(
            f.error,
          ),
        ),
      ).toBe(true);
    } finally {
      client.destroy();
    }
    expect(await receiveAll(sqs, to.url)).toHaveLength(5);
    // Not deleted, and visible at once (released), not after the 60 s visibility timeout.
    expect(await receiveAll(sqs, from.url)).toHaveLength(10);
  });

  it('a ReceiveMessage that never answers ends the run naming it, cancelled, with its cause, nothing lost', async () => {
    const { from, to } = await parkedWith(bodies('m', 5));
    const { client, cancelled } = stalling('ReceiveMessageCommand');
    let error: unknown;
    try {
      error = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0, callTimeoutMs: STALL_MS }).catch(
        (caught: unknown) => caught,
      );
    } finally {
      client.destroy();
    }
    expect(error).toBeInstanceOf(RedriveError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^cannot receive from ${escaped(from.url)} after moving 0 message\\(s\\): SqsCallTimeoutError: ReceiveMessage: no answer from SQS within 2 s`,
      ),
    );
    expect((error as Error).cause).toBeInstanceOf(SqsCallTimeoutError);
    // The stalled request is cancelled, not left holding a connection.
    expect(cancelled()).toBe(true);
    expect(await receiveAll(sqs, from.url)).toHaveLength(5);
  });

  it('a DeleteMessageBatch that never answers reports its messages sent but not deleted, naming it, and cancels it', async () => {
    const { from, to } = await parkedWith(bodies('m', 15));
    const { client, cancelled } = stalling('DeleteMessageBatchCommand');
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0, callTimeoutMs: STALL_MS });
      expect(summary).toMatchObject({ moved: 5, failed: 10 });
      expect(new Set(summary.failures.map((f) => f.error.split(' (it may')[0]))).toEqual(
        new Set([
          'sent, but not deleted from the source: it will be moved again by the next run (SqsCallTimeoutError: ' +
            'DeleteMessageBatch: no answer from SQS within 2 s',
        ]),
      );
    } finally {
      client.destroy();
    }
    expect(cancelled()).toBe(true);
    expect(await receiveAll(sqs, to.url)).toHaveLength(15);
  });

  it('deletes a copy SQS hands out again of a moved message: the source is left empty, nothing sent twice', async () => {
    const { from, to } = await parkedWith([...bodies('m', 15), 'stand-in']);
    const client = localSqs();
    handingOutAgain(client, (body) => body === 'stand-in');
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0 });
      expect(summary).toMatchObject({ moved: 15, failed: 0 });
    } finally {
      client.destroy();
    }
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(sorted(bodies('m', 15)));
    // The copy is deleted, not left in flight to come back after the visibility timeout and be moved twice.
    expect(await held(from)).toBe(0);
  });

  it('ends after 10 receives of nothing but copies of moved messages, without trying to release the deleted copies', async () => {
    // 11 receives' worth: the run stops after the tenth, leaving the last 10 unreceived.
    const standIns = Array.from({ length: 110 }, (_, i) => `stand-in-${i}`);
    const { from, to } = await parkedWith(bodies('m', 10));
    await sendMessages(
      sqs,
      from.url,
      standIns.map((body) => ({ body })),
    );
    const client = localSqs();
    // Receive after receive, every stand-in comes as a copy of a moved message.
    handingOutAgain(client, (body) => body?.startsWith('stand-in-') ?? false);
    const { summary, warnings } = await redriveWithWarnings(client, from, to);
    // The copies were deleted: releasing their handles would fail, and warn of messages left hidden that are gone.
    expect(warnings).toEqual([]);
    expect(summary).toMatchObject({ moved: 10, failed: 0, complete: false });
    expect(await held(from)).toBe(10);
  });

  it('a delete of such a copy that never answers is given up and cancelled; the run still moves the rest', async () => {
    const { from, to } = await parkedWith([...bodies('m', 15), 'stand-in']);
    // The second delete is that of the copy: the copy comes in the second receive, and is deleted before that batch is
    // sent (the first delete is the first batch's, after its send).
    const { client, cancelled } = stalling('DeleteMessageBatchCommand', 2);
    handingOutAgain(client, (body) => body === 'stand-in');
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0, callTimeoutMs: STALL_MS });
      expect(summary).toMatchObject({ moved: 15, failed: 0 });
    } finally {
      client.destroy();
    }
    expect(cancelled()).toBe(true);
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(sorted(bodies('m', 15)));
    // Best effort: the copy is left in the source, where a later run moves it again (same Idempotency-Key).
    expect(await held(from)).toBe(1);
  });

  it('asks for the system attributes by their current name: an SQS that reads only that still moves everything', async () => {
    const { from, to } = await parkedWith(bodies('m', 12));
    const client = localSqs();
    // The emulation: SQS reading only MessageSystemAttributeNames (AttributeNames is deprecated); local SQS reads only
    // AttributeNames, so the newer list is put in its place. Without SentTimestamp no message is provably old enough.
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName !== 'ReceiveMessageCommand') return next(args);
        const input = args.input as { AttributeNames?: string[]; MessageSystemAttributeNames?: string[] };
        return next({
          ...args,
          input: { ...input, AttributeNames: input.MessageSystemAttributeNames ?? [] },
        } as typeof args);
      },
      { step: 'initialize' },
    );
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0 });
      expect(summary).toMatchObject({ moved: 12, failed: 0, arrivedLater: 0 });
    } finally {
      client.destroy();
    }
  });

  it('counts a failed message toward --max, and in the progress total when the queue counted none', async () => {
    const { from, to } = await parkedWith(bodies('m', 17));
    // The fault: SQS refusing the last entry of the first send (local SQS never answers Failed).
    const { client } = refusingLastEntry('SendMessageBatchCommand', 'InternalError', countingNone());
    const progress: { moved: number; failed: number; total: number }[] = [];
    try {
      const summary = await redrive(client, {
        from: from.url,
        to: to.url,
        max: 12,
        emptyWaitS: 0,
        onProgress: (step) => progress.push(step),
      });
      // 9 moved and 1 failed of the first 10: 2 more reach --max.
      expect(summary).toMatchObject({ moved: 11, failed: 1 });
    } finally {
      client.destroy();
    }
    // The queue counted none: the total is what was done so far, the failed message included.
    expect(progress).toEqual([
      { moved: 9, failed: 1, total: 10 },
      { moved: 11, failed: 1, total: 12 },
    ]);
    expect(await receiveAll(sqs, to.url)).toHaveLength(11);
  });

  it('warns of no room for the marker only for messages it moved, not one whose send was refused', async () => {
    const { from, to } = await parkedWith(bodies('m', 9));
    await sendMessages(sqs, from.url, [{ body: 'full', attributes: TEN_ATTRIBUTES }]);
    // The fault: SQS refusing the last entry, the one with no room for the marker (local SQS never answers Failed).
    const { client, refused } = refusingLastEntry('SendMessageBatchCommand', 'InternalError');
    const { summary, warnings } = await redriveWithWarnings(client, from, to);
    expect(refused()?.MessageBody).toBe('full');
    expect(summary).toMatchObject({ moved: 9, failed: 1 });
    expect(warnings).toEqual([]);
  });

  it('used as a library without onWarning, a run whose warnings fire still ends with its summary', async () => {
    const { from, to } = await parkedWith(bodies('old', 4));
    await sendMessages(sqs, from.url, [{ body: 'full', attributes: TEN_ATTRIBUTES }]);
    const client = clientWithLateArrivals(from.url, bodies('new', 5));
    spoilingRelease(client);
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0, clockOffsetMs: 0 });
      expect(summary).toMatchObject({ moved: 5, arrivedLater: 5 });
    } finally {
      client.destroy();
    }
  });

  it("gives the closing long poll its wait on top of the call timeout: an empty source's wait is no stalled call", async () => {
    const { from, to } = await parkedWith(bodies('m', 3));
    // Local SQS answers an empty long poll after all of its wait (2 s), beyond the 1 s any other call may take.
    const summary = await redrive(sqs, { from: from.url, to: to.url, emptyWaitS: 2, callTimeoutMs: 1_000 });
    expect(summary).toMatchObject({ moved: 3, failed: 0, complete: true, interrupted: false });
  });

  it('issue 17: an entry SendMessageBatch answers Failed is reported and stays in the source, not deleted', async () => {
    const { from, to } = await parkedWith(bodies('m', 15));
    // The fault: SQS refusing one entry of a batch (local SQS never answers Failed).
    const { client, refused } = refusingLastEntry('SendMessageBatchCommand', 'InternalError');
    let failures: RedriveSummary['failures'] = [];
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0 });
      expect(summary).toMatchObject({ moved: 14, failed: 1, destinations: { [to.url]: 14 } });
      failures = summary.failures;
    } finally {
      client.destroy();
    }
    expect(await receiveAll(sqs, to.url)).toHaveLength(14);
    // Not deleted, and released at once: the refused message is still in the source.
    const left = await receiveAll(sqs, from.url);
    expect(left.map((m) => m.Body)).toEqual([refused()?.MessageBody]);
    // The failure names that message, so an operator can find it in the source.
    expect(failures).toEqual([{ messageId: left[0]?.MessageId, error: 'InternalError: injected' }]);
  });

  it('a Failed entry naming an id it was not sent is reported as "?", the batch still moved', async () => {
    const { from, to } = await parkedWith(bodies('m', 5));
    let injected = false;
    // The fault: a SendMessageBatch answer whose Failed names an id not in the request (SQS does not; a proxy might).
    const client = editAnswers<{ Failed?: object[] }>(localSqs(), 'SendMessageBatchCommand', (output) => {
      if (injected) return;
      injected = true;
      output.Failed = [{ Id: 'unknown', SenderFault: false, Code: 'InternalError', Message: 'injected' }];
    });
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: EMPTY_WAIT_S });
      expect(summary).toMatchObject({ moved: 5, failed: 1 });
      expect(summary.failures).toEqual([{ messageId: '?', error: 'InternalError: injected' }]);
    } finally {
      client.destroy();
    }
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(bodies('m', 5));
  });

  it('a message whose send failed, handed out again by SQS in the same run, is not sent again', async () => {
    const { from, to } = await parkedWith(bodies('m', 15));
    const { client, refused } = refusingLastEntry('SendMessageBatchCommand', 'InternalError');
    const received = new Map<string | undefined, Message>();
    let again = false;
    // The fault: standard SQS handing out a received message again (at-least-once); local SQS never does.
    editAnswers<ReceiveMessageResult>(client, 'ReceiveMessageCommand', (output) => {
      const failed = received.get(refused()?.MessageBody);
      if (failed && !again && output.Messages) {
        again = true;
        output.Messages.unshift(failed);
      }
      for (const message of output.Messages ?? []) received.set(message.Body, message);
    });
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0 });
      expect(again).toBe(true);
      expect(summary).toMatchObject({ moved: 14, failed: 1 });
    } finally {
      client.destroy();
    }
    expect((await receiveAll(sqs, to.url)).map((m) => m.Body)).not.toContain(refused()?.MessageBody);
  });

  it('a delete SQS answers Failed for one entry: that one is reported sent but not deleted, the others moved', async () => {
    const { from, to } = await parkedWith(bodies('m', 15));
    // The fault: SQS refusing one entry of a delete (local SQS never answers Failed); it keeps that message.
    const { client } = refusingLastEntry('DeleteMessageBatchCommand', 'ReceiptHandleIsInvalid');
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0 });
      expect(summary).toMatchObject({ moved: 14, failed: 1, destinations: { [to.url]: 15 } });
      expect(summary.failures).toEqual([
        {
          messageId: expect.any(String),
          error:
            'sent, but not deleted from the source: it will be moved again by the next run (ReceiptHandleIsInvalid: injected)',
        },
      ]);
    } finally {
      client.destroy();
    }
    expect(await receiveAll(sqs, to.url)).toHaveLength(15);
    expect(await receiveAll(sqs, from.url)).toHaveLength(1);
  });

  it('a delete that fails reports every message of its batch sent but not deleted, and leaves them', async () => {
    const { from, to } = await parkedWith(bodies('m', 15));
    const client = clientWithLateArrivals(from.url, [], failingCall('DeleteMessageBatchCommand', 1));
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 0 });
      expect(summary).toMatchObject({ moved: 5, failed: 10 });
      expect(new Set(summary.failures.map((f) => f.error))).toEqual(
        new Set(['sent, but not deleted from the source: it will be moved again by the next run (Error: throttled)']),
      );
    } finally {
      client.destroy();
    }
    expect(await receiveAll(sqs, to.url)).toHaveLength(15);
    expect(await receiveAll(sqs, from.url)).toHaveLength(10);
  });

  it('a call that times out says which, after how long, that it may have taken effect, and what to do', () => {
    const error = new SqsCallTimeoutError('SendMessageBatch', 1_500);
    expect([error.name, error.call, error.timeoutMs, error.message]).toEqual([
      'SqsCallTimeoutError',
      'SendMessageBatch',
      1_500,
      'SendMessageBatch: no answer from SQS within 1.5 s (it may still have taken effect); check the network or SQS ' +
        'health, then run it again',
    ]);
    expect(new RedriveError('x').name).toBe('RedriveError');
  });

  it('finding 2: a Ctrl-C during the last, empty receive is reported as an interruption', async () => {
    const { from, to } = await parkedWith(bodies('m', 3));
    const controller = new AbortController();
    const client = localSqs();
    let receives = 0;
    // The interleaving: the signal fires while the second receive is on its way (local SQS cannot be asked for it).
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'ReceiveMessageCommand' && ++receives === 2) controller.abort();
        return next(args);
      },
      { step: 'initialize' },
    );
    try {
      const summary = await redrive(client, { from: from.url, to: to.url, emptyWaitS: 1, signal: controller.signal });
      expect(summary).toMatchObject({ moved: 3, interrupted: true });
    } finally {
      client.destroy();
    }
  });

  it('finding 3: counts the entries SQS lists as failed in the release warning', async () => {
    const { from, to } = await parkedWith(bodies('old', 5));
    const client = clientWithLateArrivals(from.url, bodies('new', 5));
    spoilingRelease(client);
    const { summary, warnings } = await redriveWithWarnings(client, from, to, 0);
    expect(summary).toMatchObject({ moved: 5, arrivedLater: 5 });
    expect(warnings).toEqual([
      `1 message(s) this run left could not be made visible again at once: they reappear in ${from.url} within 60 s`,
    ]);
    expect(await receiveAll(sqs, from.url)).toHaveLength(4);
  });
});

describe('redrive to FIFO queues (review 2)', () => {
  it('finding 2: a copy is not dropped because its original deduplication id reached the destination lately', async () => {
    const [from, to] = await Promise.all([
      createQueue(sqs, 'parked', { fifo: true }),
      createQueue(sqs, 'target', { fifo: true }),
    ]);
    const sameId = { MessageGroupId: 'g', MessageDeduplicationId: 'order-1' };
    await sqs.send(new SendMessageCommand({ QueueUrl: to.url, MessageBody: 'earlier', ...sameId }));
    await sqs.send(new SendMessageCommand({ QueueUrl: from.url, MessageBody: 'dead', ...sameId }));

    const summary = await redrive(sqs, { from: from.url, to: to.url, method: 'loop', emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 1, failed: 0 });
    expect(sorted((await receiveAll(sqs, to.url)).map((m) => m.Body))).toEqual(['dead', 'earlier']);
  });

  it('issue 17: a standard queue redriven to a FIFO queue: the destination decides, each message its own group', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target', { fifo: true })]);
    await sendMessages(
      sqs,
      from.url,
      bodies('m', 3).map((body) => ({ body })),
    );

    const summary = await redrive(sqs, { from: from.url, to: to.url, emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 3, failed: 0 });
    const landed = await receiveAll(sqs, to.url);
    expect(sorted(landed.map((m) => m.Body))).toEqual(bodies('m', 3));
    expect(new Set(landed.map((m) => m.Attributes?.MessageGroupId)).size).toBe(3);
  });

  it('finding 3: once a message of a group fails, the later ones of that group are not sent', async () => {
    const [from, orders] = await Promise.all([
      createQueue(sqs, 'quarantine', { fifo: true }),
      createQueue(sqs, 'orders', { fifo: true }),
    ]);
    const source = { [QUARANTINE_ATTRIBUTES.sourceQueue]: text(orders.arn) };
    await sendMessages(sqs, from.url, [
      // No recorded source: it fails, and g-2 must not overtake it.
      { body: 'g-1', groupId: 'g' },
      { body: 'g-2', groupId: 'g', attributes: source },
      { body: 'h-1', groupId: 'h', attributes: source },
    ]);

    const summary = await redrive(sqs, { from: from.url, emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 1, failed: 2 });
    expect(summary.failures.map((f) => f.error)).toContain(
      'not sent: an earlier message of FIFO group g was not moved (order kept); run it again',
    );
    const landed = await receiveAll(sqs, orders.url);
    expect(landed.map((m) => [m.Body, m.Attributes?.MessageGroupId])).toEqual([['h-1', 'h']]);
    expect(sorted((await receiveAll(sqs, from.url)).map((m) => m.Body))).toEqual(['g-1', 'g-2']);
  });
});

describe('redrive trusts SQS over producers and ends on what comes back (issue 9)', () => {
  it('defect 9: prefers DeadLetterQueueSourceArn over a producer-set quarantine.sourceQueue', async () => {
    const { queue, dlq } = await createQueueWithDlq(sqs, 'forged', 1);
    const elsewhere = await createQueue(sqs, 'elsewhere');
    await sendMessages(sqs, queue.url, [
      { body: 'dead', attributes: { [QUARANTINE_ATTRIBUTES.sourceQueue]: text(elsewhere.arn) } },
    ]);
    // One receive whose visibility runs out: SQS dead-letters it (maxReceiveCount 1).
    await receiveAll(sqs, queue.url, { visibilityTimeoutS: 1 });
    await pollUntil('the message to be dead-lettered', async () => ((await count(dlq)) > 0 ? true : undefined));

    const summary = await redrive(sqs, { from: dlq.url, emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 1, failed: 0, destinations: { [queue.url]: 1 } });
    expect((await receiveAll(sqs, queue.url)).map((m) => m.Body)).toEqual(['dead']);
    expect(await receiveAll(sqs, elsewhere.url)).toEqual([]);
  });

  it("issue 17: does not send a message back to a quarantine.sourceQueue outside the DLQ's region", async () => {
    const [quarantineQueue, elsewhere] = await Promise.all([
      createQueue(sqs, 'quarantine'),
      createQueue(sqs, 'elsewhere'),
    ]);
    // A producer-set quarantine.sourceQueue naming a queue of another region. Local SQS ignores the region of a URL,
    // so this ARN resolves to a queue that exists: only the DLQ's ARN (account and region) tells it apart.
    const foreign = elsewhere.arn.replace(`:${LOCAL_AWS.region}:`, ':ap-south-2:');
    expect(foreign).not.toBe(elsewhere.arn);
    await sendMessages(sqs, quarantineQueue.url, [
      { body: 'forged', attributes: { [QUARANTINE_ATTRIBUTES.sourceQueue]: text(foreign) } },
    ]);

    const summary = await redrive(sqs, { from: quarantineQueue.url, emptyWaitS: EMPTY_WAIT_S, visibilityTimeoutS: 1 });

    expect(summary).toMatchObject({ moved: 0, failed: 1 });
    expect(summary.failures[0]!.error).toMatch(/no source queue recorded .*pass --to/);
    expect(await receiveAll(sqs, elsewhere.url)).toEqual([]);
  });

  it('defect 9: ignores a quarantine.sourceQueue naming another account', () => {
    const message = {
      MessageAttributes: { [QUARANTINE_ATTRIBUTES.sourceQueue]: text('arn:aws:sqs:us-east-1:999999999999:x') },
    };
    expect(sourceArnOf(message, 'arn:aws:sqs:us-east-1:123456789012:dlq')).toBeUndefined();
    expect(sourceArnOf(message, 'arn:aws:sqs:us-east-1:999999999999:dlq')).toBe('arn:aws:sqs:us-east-1:999999999999:x');
  });

  it("where a message goes back: SQS first, then a quarantine.sourceQueue (own or folded) in the DLQ's scope", () => {
    const dlqArn = 'arn:aws:sqs:us-east-1:123456789012:dlq';
    const own = 'arn:aws:sqs:us-east-1:123456789012:orders';
    const recorded = (value: string) => ({ MessageAttributes: { [QUARANTINE_ATTRIBUTES.sourceQueue]: text(value) } });
    const folded = (value: unknown) => ({
      MessageAttributes: { [QUARANTINE_ATTRIBUTES.combined]: text(JSON.stringify({ sourceQueue: value })) },
    });
    const cases: [Message, string | undefined][] = [
      [
        { Attributes: { DeadLetterQueueSourceArn: 'arn:aws:sqs:eu-west-1:999999999999:sqs-said' } },
        'arn:aws:sqs:eu-west-1:999999999999:sqs-said',
      ],
      [recorded(own), own],
      [folded(own), own],
      [folded(7), undefined],
      [{ MessageAttributes: { [QUARANTINE_ATTRIBUTES.combined]: text('{not json') } }, undefined],
      [{ MessageAttributes: { [QUARANTINE_ATTRIBUTES.combined]: text('"text"') } }, undefined],
      [{ MessageAttributes: { [QUARANTINE_ATTRIBUTES.combined]: text('{"reason":"x"}') } }, undefined],
      [{}, undefined],
      // Not an SQS queue ARN of the DLQ's account and region.
      [recorded('arn:aws:sns:us-east-1:123456789012:orders'), undefined],
      [recorded('arn:aws:sqs:us-east-2:123456789012:orders'), undefined],
      [recorded('arx:aws:sqs:us-east-1:123456789012:orders'), undefined],
      [recorded('arn:aws:sqs:us-east-1:123456789012:orders:extra'), undefined],
      [recorded('arn:aws:sqs:us-east-1:123456789012'), undefined],
      // Region and account run together as the DLQ's do ("us-east-1" + "123456789012"): the parts still differ.
      [recorded('arn:aws:sqs:us-east-11:23456789012:orders'), undefined],
      [recorded('https://sqs.us-east-1.amazonaws.com/123456789012/orders'), undefined],
    ];
    expect(cases.map(([message]) => sourceArnOf(message, dlqArn))).toEqual(cases.map(([, expected]) => expected));
    // A DLQ that is not an SQS ARN vouches for nothing; without a DLQ ARN the recorded one is taken as it is.
    expect(sourceArnOf(recorded(own), 'not-an-arn')).toBeUndefined();
    expect(sourceArnOf(recorded(own))).toBe(own);
  });

  it('vouches for no recorded source queue when it and the DLQ ARN are malformed alike', () => {
    const recorded = (value: string) => ({ MessageAttributes: { [QUARANTINE_ATTRIBUTES.sourceQueue]: text(value) } });
    // Each pair shares its five leading parts: only the shape check of both ARNs refuses them.
    const pairs: [string, string][] = [
      ['arn:aws:sqs:us-east-1:123456789012:orders:extra', 'arn:aws:sqs:us-east-1:123456789012:dlq:extra'],
      ['arn:aws:sqs:us-east-1:123456789012', 'arn:aws:sqs:us-east-1:123456789012'],
      ['arx:aws:sqs:us-east-1:123456789012:orders', 'arx:aws:sqs:us-east-1:123456789012:dlq'],
      ['arn:aws:sns:us-east-1:123456789012:orders', 'arn:aws:sns:us-east-1:123456789012:dlq'],
      ['orders', 'dlq'],
    ];
    expect(pairs.map(([source, dlq]) => sourceArnOf(recorded(source), dlq))).toEqual(pairs.map(() => undefined));
  });

  it('defect 14: with a consumer quarantining everything straight back, moves each message once, reports them, ends', {
    timeout: 30_000,
  }, async () => {
    const [orders, dlq] = await Promise.all([createQueue(sqs, 'poison-src'), createQueue(sqs, 'poison-dlq')]);
    const quarantine = createQuarantine(sqs, dlq.url);
    const quarantineAll = async (records: SQSRecord[]) => {
      const items = records.map((record) => ({ record, reason: 'not-json' as const, detail: 'still poison' }));
      await quarantine.send(items, AbortSignal.timeout(10_000));
      await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: orders.url,
          Entries: records.map((r, i) => ({ Id: String(i), ReceiptHandle: r.receiptHandle })),
        }),
      );
    };
    await quarantineAll(
      await receiveAsRecords(
        sqs,
        orders,
        bodies('poison', 5).map((body) => ({ body })),
      ),
    );
    // The consumer of the source queue: every message it gets is poison again, at once.
    let consuming = true;
    const consumer = (async () => {
      while (consuming) {
        const messages = await receiveAll(sqs, orders.url, { visibilityTimeoutS: 30 });
        if (messages.length > 0) await quarantineAll(messages.map((m) => toLambdaRecord(m, orders.arn)));
        else await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      // The closing long poll (local SQS waits all of it) sees the copies the consumer quarantined back.
      const summary = await redrive(sqs, { from: dlq.url, emptyWaitS: 3, visibilityTimeoutS: 30 });
      expect(summary).toMatchObject({ moved: 5, failed: 0, returned: 5 });
      await pollUntil('the 5 messages back in the DLQ', async () => ((await count(dlq)) === 5 ? true : undefined));
    } finally {
      consuming = false;
      await consumer;
    }
  });
});

/**
 * A real client of local SQS whose ListMessageMoveTasks answers pass through `see` (a task failing, lingering or
 * vanishing is SQS's own doing: local SQS cannot be asked for it). Counts the CancelMessageMoveTask calls.
 */
function moveTaskClient(
  see: (results: ListMessageMoveTasksResultEntry[], cancels: number) => ListMessageMoveTasksResultEntry[] | undefined,
) {
  const client = localSqs();
  // The handle SQS gave the task, and the one each cancel named.
  const calls = { cancels: 0, started: undefined as string | undefined, cancelled: [] as (string | undefined)[] };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'CancelMessageMoveTaskCommand') {
        calls.cancels++;
        calls.cancelled.push((args.input as { TaskHandle?: string }).TaskHandle);
      }
      const result = await next(args);
      if (context.commandName === 'StartMessageMoveTaskCommand')
        calls.started = (result.output as { TaskHandle?: string }).TaskHandle;
      if (context.commandName === 'ListMessageMoveTasksCommand') {
        const output = result.output as ListMessageMoveTasksResult;
        output.Results = see(output.Results ?? [], calls.cancels);
      }
      return result;
    },
    { step: 'initialize' },
  );
  return { client, calls };
}

describe('redrive by move task, when SQS reports trouble', () => {
  async function dlqWithOne() {
    const { dlq } = await createQueueWithDlq(sqs, 'task');
    const to = await createQueue(sqs, 'task-target');
    await sendMessages(sqs, dlq.url, [{ body: 'dead' }]);
    await counted(dlq, 1);
    return { dlq, to };
  }

  /** A move task of the one dead message to a target queue, whose listings pass through `see`. */
  async function redriveByTask(
    see: Parameters<typeof moveTaskClient>[0],
    options: Partial<RedriveOptions> = {},
  ): Promise<{
    summary: Awaited<ReturnType<typeof redrive>>;
    cancels: number;
    to: LocalQueue;
    handles: { started?: string; cancelled: (string | undefined)[] };
  }> {
    const { dlq, to } = await dlqWithOne();
    const { client, calls } = moveTaskClient(see);
    try {
      const summary = await redrive(client, {
        from: dlq.url,
        to: to.url,
        method: 'move-task',
        pollIntervalMs: 1,
        ...options,
      });
      return { summary, cancels: calls.cancels, to, handles: { started: calls.started, cancelled: calls.cancelled } };
    } finally {
      client.destroy();
    }
  }

  it('a task SQS reports FAILED ends the run with its reason, incomplete', async () => {
    const { dlq, to } = await dlqWithOne();
    const { client } = moveTaskClient((results) =>
      results.map((task) => ({ ...task, Status: 'FAILED', FailureReason: 'AWS.SimpleQueueService.KmsAccessDenied' })),
    );
    try {
      const summary = await redrive(client, { from: dlq.url, to: to.url, method: 'move-task', pollIntervalMs: 10 });
      expect(summary).toMatchObject({
        method: 'move-task',
        complete: false,
        interrupted: false,
        failed: 0,
        taskFailureReason: 'AWS.SimpleQueueService.KmsAccessDenied',
      });
    } finally {
      client.destroy();
    }
  });

  it('Ctrl-C cancels the task once and reports the run interrupted', async () => {
    const controller = new AbortController();
    // The task runs until it is cancelled (local SQS's would finish at once).
    const { summary, cancels, handles } = await redriveByTask(
      (results, cancels) =>
        results.map((task) => ({
          ...task,
          Status: cancels === 0 ? 'RUNNING' : 'CANCELLED',
          ApproximateNumberOfMessagesMoved: 0,
        })),
      { pollIntervalMs: 10, signal: controller.signal, onProgress: () => controller.abort() },
    );
    expect(summary).toMatchObject({
      method: 'move-task',
      interrupted: true,
      complete: false,
      moved: 0,
    });
    // Exactly: toMatchObject would let a destination with 0 moved, or a failure, through.
    expect(summary.destinations).toEqual({});
    expect(summary.failures).toEqual([]);
    expect(cancels).toBe(1);
    // The cancel names the task this run started.
    expect(handles.cancelled).toEqual([handles.started]);
    expect(handles.started).toEqual(expect.any(String));
  });

  it('a task still CANCELLING after Ctrl-C is cancelled once and followed until SQS says CANCELLED', async () => {
    const controller = new AbortController();
    let listingsSinceCancel = 0;
    // SQS takes a while to cancel: two listings say CANCELLING before one says CANCELLED.
    const { summary, cancels } = await redriveByTask(
      (results, cancels) =>
        results.map((task) => ({
          ...task,
          Status: cancels === 0 ? 'RUNNING' : ++listingsSinceCancel <= 2 ? 'CANCELLING' : 'CANCELLED',
          ApproximateNumberOfMessagesMoved: 0,
        })),
      { signal: controller.signal, onProgress: () => controller.abort() },
    );
    expect(summary).toMatchObject({ method: 'move-task', interrupted: true, complete: false, moved: 0 });
    expect(cancels).toBe(1);
    expect(listingsSinceCancel).toBe(3);
  });

  // The 10 s bound turns a run that waits the interval out into a failure instead of a hang.
  it('Ctrl-C during the wait between two listings cancels the task without waiting the interval out', {
    timeout: 10_000,
  }, async () => {
    const controller = new AbortController();
    let listedBeforeCancel = 0;
    const { summary, cancels } = await redriveByTask(
      (results, cancels) =>
        results.map((task) => {
          if (cancels === 0) listedBeforeCancel++;
          return { ...task, Status: cancels === 0 ? 'RUNNING' : 'CANCELLED' };
        }),
      {
        // Longer than the test's 10 s: only Ctrl-C waking the wait lets the run end in time.
        pollIntervalMs: 600_000,
        signal: controller.signal,
        // Aborted after the first listing, while the run waits for the next one.
        onProgress: () => setImmediate(() => controller.abort()),
      },
    );
    expect(summary).toMatchObject({ method: 'move-task', interrupted: true, complete: false });
    expect(cancels).toBe(1);
    // The run waited after the first listing instead of listing again at once.
    expect(listedBeforeCancel).toBe(1);
  });

  it('a task that shows only on the tenth listing is still followed to its end', async () => {
    let listings = 0;
    const progress: unknown[] = [];
    // SQS may list a task late, with no Results or empty ones; the run gives up only after ten listings without it
    // (local SQS's takes a second: it is shown finished here).
    const { summary, to } = await redriveByTask(
      (results) =>
        ++listings <= 5
          ? undefined
          : listings <= 10
            ? []
            : results.map((task) => ({ ...task, Status: 'COMPLETED', ApproximateNumberOfMessagesMoved: 1 })),
      { onProgress: (p) => progress.push(p) },
    );
    expect(summary).toMatchObject({ method: 'move-task', moved: 1, complete: true });
    expect(summary.destinations).toEqual({ [to.arn]: 1 });
    expect(listings).toBe(11);
    expect(progress.slice(0, 10)).toEqual(Array(10).fill({ moved: 0, failed: 0, total: 1 }));
  });

  it("reports SQS's count of messages to move as the total, and the source's count when SQS gives none", async () => {
    let listings = 0;
    const starts: unknown[] = [];
    const totals: number[] = [];
    const { summary } = await redriveByTask(
      (results) =>
        results.map((task) =>
          ++listings === 1
            ? { ...task, Status: 'RUNNING', ApproximateNumberOfMessagesToMove: undefined }
            : {
                ...task,
                Status: 'COMPLETED',
                ApproximateNumberOfMessagesMoved: 1,
                ApproximateNumberOfMessagesToMove: 7,
              },
        ),
      { onStart: (info) => starts.push(info), onProgress: ({ total }) => totals.push(total) },
    );
    expect(summary).toMatchObject({ method: 'move-task', complete: true, moved: 1 });
    // Only a FAILED task has a failure reason.
    expect(summary.taskFailureReason).toBeUndefined();
    expect(starts).toEqual([{ method: 'move-task', total: 1 }]);
    expect(totals).toEqual([1, 7]);
  });

  it("a task SQS reports FAILED without a reason says 'unknown'", async () => {
    const { summary } = await redriveByTask((results) =>
      results.map((task) => ({ ...task, Status: 'FAILED', FailureReason: undefined })),
    );
    expect(summary).toMatchObject({ complete: false, interrupted: false, taskFailureReason: 'unknown' });
  });

  it('a move-task call SQS does not answer within callTimeoutMs ends the run naming that call', async () => {
    for (const call of ['StartMessageMoveTask', 'ListMessageMoveTasks']) {
      const { dlq, to } = await dlqWithOne();
      const client = stallingOnce(`${call}Command`);
      try {
        await expect(
          redrive(client, { from: dlq.url, to: to.url, method: 'move-task', pollIntervalMs: 1, callTimeoutMs: 200 }),
        ).rejects.toThrow(`the move task was refused: SqsCallTimeoutError: ${call}: no answer from SQS within 0.2 s`);
      } finally {
        client.destroy();
      }
    }
  });

  it('a task that never shows in ListMessageMoveTasks ends the run with a RedriveError saying where to look', async () => {
    const { dlq, to } = await dlqWithOne();
    const { client } = moveTaskClient(() => []);
    try {
      const error = await redrive(client, { from: dlq.url, to: to.url, method: 'move-task', pollIntervalMs: 1 }).then(
        () => undefined,
        (thrown: Error) => thrown,
      );
      expect(error?.message).toMatch(
        /the move task was refused: RedriveError: the move task on .* does not show in ListMessageMoveTasks: check the SQS console/,
      );
      // The task's own error stays reachable as the cause.
      expect((error?.cause as Error | undefined)?.message).toMatch(/does not show in ListMessageMoveTasks/);
    } finally {
      client.destroy();
    }
  });

  it('refuses a move task without --to or with --max, a --to naming the source, and a --max below 1', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'refused'), createQueue(sqs, 'refused-to')]);
    const refusal = (options: Partial<Parameters<typeof redrive>[1]>) =>
      redrive(sqs, { from: from.url, ...options }).then(
        () => 'accepted',
        (error: Error) => `${error.name}: ${error.message}`,
      );
    expect(await refusal({ method: 'move-task' })).toMatch(
      /^RedriveError: a move task needs --to and cannot honour --max/,
    );
    expect(await refusal({ method: 'move-task', to: to.url, max: 5 })).toMatch(/^RedriveError: a move task needs --to/);
    expect(await refusal({ to: from.url })).toMatch(/^RedriveError: --to is the same queue as --from/);
    expect(await refusal({ max: 0 })).toBe('RedriveError: --max must be a whole number of at least 1, not 0');
    expect(await refusal({ max: 1.5 })).toMatch(/^RedriveError: --max must be a whole number/);
    expect(await refusal({ max: 1, emptyWaitS: 0 })).toBe('accepted');
  });

  it('a source or destination it cannot read is a RedriveError naming the queue and what to check', async () => {
    const to = await createQueue(sqs, 'unread-to');
    const missing = `${to.url}-missing`;
    const failure = (options: Parameters<typeof redrive>[1]) =>
      redrive(sqs, options).then(
        () => 'accepted',
        // The cause is SQS's own error, for a caller that tells its codes apart.
        (error: Error) => `${error.name}: ${error.message} (cause: ${(error.cause as Error | undefined)?.name})`,
      );
    expect(await failure({ from: missing, to: to.url })).toMatch(
      new RegExp(
        `^RedriveError: cannot read the source queue ${missing}: .*QueueDoesNotExist.*; check --from and AWS settings \\(cause: .*QueueDoesNotExist.*\\)$`,
        's',
      ),
    );
    expect(await failure({ from: to.url, to: missing, method: 'move-task' })).toMatch(
      new RegExp(
        `^RedriveError: cannot read the destination queue ${missing}: .*QueueDoesNotExist.*; check --to \\(cause: .*QueueDoesNotExist.*\\)$`,
        's',
      ),
    );
  });
});

describe('redrive marks what it moves as a redelivery (issue 15 A3)', () => {
  it('a message SQS dead-lettered comes back looked up in the ledger, skipping the endpoints that have it', {
    timeout: 30_000,
  }, async () => {
    const { queue, dlq } = await createQueueWithDlq(sqs, 'marked', 1);
    await sendMessages(sqs, queue.url, [
      { body: JSON.stringify(cloudEvent('out-of-receives')) },
      { body: JSON.stringify(cloudEvent('full')), attributes: TEN_ATTRIBUTES },
    ]);
    // One receive whose visibility runs out: SQS dead-letters both (maxReceiveCount 1), without quarantine.*.
    await receiveAll(sqs, queue.url, { visibilityTimeoutS: 1 });
    await pollUntil('both messages to be dead-lettered', async () => ((await count(dlq)) === 2 ? true : undefined));
    // alpha took both events before the outage went on.
    const table = await createLedgerTable(dynamodb, 'redrive');
    const ledger = createLedger(dynamodb, { table, endpoints: ['alpha', 'beta'], ttlS: 3600 });
    const keys = ['out-of-receives', 'full'].map(
      (id) => (parseEvent(JSON.stringify(cloudEvent(id)), 1e6) as ValidEvent).key,
    );
    await ledger.record(
      keys.map((key) => ({ key, endpoint: 'alpha' })),
      AbortSignal.timeout(10_000),
    );
    const warnings: string[] = [];

    const summary = await redrive(sqs, {
      from: dlq.url,
      to: queue.url,
      emptyWaitS: EMPTY_WAIT_S,
      onWarning: (w) => warnings.push(w),
    });

    expect(summary).toMatchObject({ method: 'loop', moved: 2, failed: 0 });
    // The one with no room for the marker is moved, and the run says what that costs.
    expect(warnings).toEqual([
      expect.stringMatching(
        /^1 message\(s\) had no room for redrive.from \(10 attributes .* reach every endpoint again/,
      ),
    ]);
    const records = (await receiveAll(sqs, queue.url)).map((m) => toLambdaRecord(m, queue.arn));
    expect(records.map((r) => r.attributes.ApproximateReceiveCount)).toEqual(['1', '1']);
    const asked: Record<string, string[]> = {};
    await processBatch(records, {
      maxEventBytes: 1e6,
      lookup: (k) => ledger.lookup(k, AbortSignal.timeout(10_000)),
      deliver: async (event, already) => {
        asked[event.id] = [...(already ?? [])];
        return { results: [], skipped: [...(already ?? [])] };
      },
    });
    expect(asked).toEqual({ 'out-of-receives': ['alpha'], full: [] });
    const marked = records.find((r) => r.body.includes('out-of-receives'))!;
    expect(marked.messageAttributes[REDRIVE_MARKER]?.stringValue).toBe(dlq.arn);
  });
});

describe('npm run redrive (the CLI)', () => {
  const env = {
    ...process.env,
    AWS_REGION: LOCAL_AWS.region,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL_SQS: inject('sqsEndpoint'),
  };
  // One node process (no tsx wrapper), so a kill reaches the process doing the work.
  const cli = (args: string[]): ChildProcess =>
    spawn(process.execPath, ['--import', 'tsx', 'infra/cli/redrive.ts', ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const finished = (child: ChildProcess) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk;
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk;
      });
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  it('moves everything and prints a summary', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    await sendMessages(
      sqs,
      from.url,
      bodies('m', 15).map((body) => ({ body })),
    );
    const { code, stdout } = await finished(cli(['--from', from.url, '--to', to.url]));
    expect(code).toBe(0);
    expect(stdout).toMatch(/moved: +15/);
    expect(stdout).toMatch(/left in source: 0/);
    expect(await count(to)).toBe(15);
  });

  it('finding 1: exits 3 and says to run again when new messages keep arriving', { timeout: 30_000 }, async () => {
    const { from, to } = await parkedWith(bodies('old', 3));
    // Poison keeps pouring in: whenever fewer than 20 are visible, 10 more, at most 500 in all (the run needs about
    // 100 to go idle 10 times). Local SQS counts in-flight messages in ApproximateNumberOfMessages (unlike SQS), so
    // the visible ones are that minus ApproximateNumberOfMessagesNotVisible; the messages the run holds stay counted.
    let producing = true;
    const producer = (async () => {
      for (let sent = 0; producing && sent < 500; ) {
        const { Attributes } = await sqs.send(
          new GetQueueAttributesCommand({
            QueueUrl: from.url,
            AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
          }),
        );
        const visible =
          Number(Attributes?.ApproximateNumberOfMessages) - Number(Attributes?.ApproximateNumberOfMessagesNotVisible);
        if (visible < 20) {
          await sendMessages(
            sqs,
            from.url,
            bodies(`new-${sent}`, 10).map((body) => ({ body })),
          );
          sent += 10;
        }
        // Paces the producer (not a wait for an event): without it, it would spin on GetQueueAttributes.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      const { code, stdout } = await finished(cli(['--from', from.url, '--to', to.url, '--method', 'loop']));
      expect(stdout).toMatch(/incomplete: .* Run it again/s);
      expect(code).toBe(3);
    } finally {
      producing = false;
      await producer;
    }
  });

  it('refuses bad arguments with the usage', async () => {
    const { code, stderr } = await finished(cli(['--from', 'http://127.0.0.1:1/1/q', '--max', 'lots']));
    expect(code).toBe(2);
    expect(stderr).toMatch(/--max must be a whole number/);
    expect(stderr).toMatch(/Usage: npm run redrive/);
  });

  it('loses nothing when killed while a send is on its way (it sends before it deletes)', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    const all = bodies('m', 30);
    await sendMessages(
      sqs,
      from.url,
      all.map((body) => ({ body })),
    );
    // The CLI talks to local SQS through this proxy, which kills it when its second SendMessageBatch arrives (the
    // first batch moved, the second in hand): a kill at that exact point, not wherever a timer happens to land.
    let child: ChildProcess | undefined;
    let sends = 0;
    const proxy = await sqsProxy(inject('sqsEndpoint'), {
      pass: ({ target }) => {
        if (target !== 'AmazonSQS.SendMessageBatch' || ++sends < 2) return true;
        child?.kill('SIGKILL');
        return false;
      },
    });
    try {
      child = cli(['--from', proxy.via(from.url), '--to', proxy.via(to.url), '--visibility-timeout', '1', '--json']);
      const { code } = await finished(child);
      expect(code).toBeNull();
    } finally {
      await proxy.close();
    }

    // The first batch is in the target; the batch in hand comes back to the source after the 1 s visibility timeout.
    const seen = { source: [] as string[], target: [] as string[] };
    await pollUntil(
      'every message to be visible in the source or the target',
      async () => {
        for (const [queue, bodiesSeen] of [
          [from, seen.source],
          [to, seen.target],
        ] as const) {
          for (const m of await receiveAll(sqs, queue.url, { visibilityTimeoutS: 60 })) bodiesSeen.push(m.Body!);
        }
        return seen.source.length + seen.target.length >= all.length ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(seen.target).toHaveLength(10);
    expect(sorted([...seen.source, ...seen.target])).toEqual(sorted(all));
  });
});

describe('redrive and SQS size limits (review rev6)', () => {
  it('moves a message already at the queue size limit: the marker must not make it too large to send', async () => {
    // Both queues allow 1,024 bytes; the message fills them (body + its one attribute), as a near-1 MiB event fills a
    // deployed queue. The marker (redrive.from + ARN) would push it over: it is moved unmarked rather than stuck.
    const limit = { attributes: { MaximumMessageSize: '1024' } };
    const [from, to] = await Promise.all([createQueue(sqs, 'parked', limit), createQueue(sqs, 'target', limit)]);
    const attributes = { tenant: text('acme') };
    const body = 'x'.repeat(1024 - 'tenant'.length - 'String'.length - 'acme'.length);
    await sendMessages(sqs, from.url, [{ body, attributes }]);
    const { summary, warnings } = await redriveWarned({ from: from.url, to: to.url, emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 1, failed: 0 });
    const landed = await receiveAll(sqs, to.url);
    expect(landed.map((m) => m.Body)).toEqual([body]);
    expect(warnings.join('\n')).toContain(REDRIVE_MARKER);
  });
});

describe('redrive copies what a message carries, and names what it cannot route (send)', () => {
  it('keeps binary attributes and the X-Ray trace header of what it moves', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    const trace = 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1';
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: from.url,
        MessageBody: 'binary',
        MessageAttributes: { blob: { DataType: 'Binary', BinaryValue: Uint8Array.from([0, 1, 254, 255]) } },
        MessageSystemAttributes: { AWSTraceHeader: { DataType: 'String', StringValue: trace } },
      }),
    );

    const summary = await redrive(sqs, { from: from.url, to: to.url, emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 1, failed: 0 });
    const [landed] = await receiveAll(sqs, to.url);
    expect([...(landed?.MessageAttributes?.blob?.BinaryValue ?? [])]).toEqual([0, 1, 254, 255]);
    expect(landed?.MessageAttributes?.blob?.StringValue).toBeUndefined();
    expect(landed?.Attributes?.AWSTraceHeader).toBe(trace);
  });

  it('fails a message whose recorded source queue cannot name a queue, saying why, and leaves it', async () => {
    const quarantineQueue = await createQueue(sqs, 'quarantine');
    // In the DLQ's account and region, but no queue can have this name: the lookup of its URL refuses it.
    const bad = quarantineQueue.arn.replace(/:[^:]+$/, ':not a queue!');
    await sendMessages(sqs, quarantineQueue.url, [
      { body: 'lost', attributes: { [QUARANTINE_ATTRIBUTES.sourceQueue]: text(bad) } },
    ]);

    const summary = await redrive(sqs, { from: quarantineQueue.url, emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 0, failed: 1 });
    expect(summary.failures[0]!.error).toContain(`'${bad}' is not an SQS queue ARN`);
    expect((await receiveAll(sqs, quarantineQueue.url)).map((m) => m.Body)).toEqual(['lost']);
  });
  it("fails a message too large for the destination with SQS's reason, marked or not, and leaves it", async () => {
    const small = { attributes: { MaximumMessageSize: '1024' } };
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target', small)]);
    await sendMessages(sqs, from.url, [{ body: 'x'.repeat(2_000) }]);

    const summary = await redrive(sqs, { from: from.url, to: to.url, emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 0, failed: 1 });
    expect(summary.destinations).toEqual({});
    expect(summary.failures[0]!.error).toMatch(/^InvalidParameterValue: .*shorter than/i);
    expect((await receiveAll(sqs, from.url)).map((m) => m.Body?.length)).toEqual([2_000]);
  });

  it('moves a quarantined message with no room for the marker without the unmarked warning', async () => {
    const [orders, quarantineQueue] = await Promise.all([createQueue(sqs, 'orders'), createQueue(sqs, 'quarantine')]);
    const nine = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`a${i}`, text('x')]));
    const records = await receiveAsRecords(sqs, orders, [{ body: 'full', attributes: nine }]);
    await createQuarantine(sqs, quarantineQueue.url).send(
      records.map((record) => ({ record, reason: 'not-json' as const, detail: 'x' })),
      AbortSignal.timeout(10_000),
    );
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: orders.url,
        Entries: records.map((r, i) => ({ Id: String(i), ReceiptHandle: r.receiptHandle })),
      }),
    );

    const { summary, warnings } = await redriveWarned({ from: quarantineQueue.url, emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 1, failed: 0 });
    // Its 9 attributes and the folded quarantine one: known as a redelivery by those, so nothing to warn about.
    const [landed] = await receiveAll(sqs, orders.url);
    expect(Object.keys(landed?.MessageAttributes ?? {})).toHaveLength(10);
    expect(warnings).toEqual([]);
  });

  it('gives a message redriven again the new marker in place of its old one, even with 10 attributes', async () => {
    const [from, to] = await Promise.all([createQueue(sqs, 'parked'), createQueue(sqs, 'target')]);
    const nine = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`a${i}`, text('x')]));
    await sendMessages(sqs, from.url, [
      { body: 'again', attributes: { ...nine, [REDRIVE_MARKER]: text('arn:aws:sqs:us-east-1:123456789012:old-dlq') } },
    ]);
    const { summary, warnings } = await redriveWarned({ from: from.url, to: to.url, emptyWaitS: EMPTY_WAIT_S });

    expect(summary).toMatchObject({ moved: 1, failed: 0 });
    expect(warnings).toEqual([]);
    const [landed] = await receiveAll(sqs, to.url);
    expect(landed?.MessageAttributes?.[REDRIVE_MARKER]?.StringValue).toBe(from.arn);
    expect(Object.keys(landed?.MessageAttributes ?? {})).toHaveLength(10);
  });
});

describe('keepHidden (what redrive and the dlq CLI hold stays hidden while they run)', () => {
  it('renews at half the timeout, one renewal at a time, and once stopped, waits for the one in flight and renews no more', async () => {
    const queue = await createQueue(sqs, 'held');
    await sendMessages(sqs, queue.url, [{ body: 'held' }]);
    const [message] = await receiveAll(sqs, queue.url, { visibilityTimeoutS: 30 });
    // Each renewal waits for the test to let it through to local SQS: one in flight is then under the test's control.
    const renewals: { timeoutS?: number; letThrough: () => void; answered: Promise<void> }[] = [];
    const client = localSqs();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName !== 'ChangeMessageVisibilityBatchCommand') return next(args);
        const input = args.input as { Entries?: { VisibilityTimeout?: number }[] };
        let letThrough = () => {};
        let answer = () => {};
        const gate = new Promise<void>((resolve) => {
          letThrough = resolve;
        });
        const answered = new Promise<void>((resolve) => {
          answer = resolve;
        });
        renewals.push({ timeoutS: input.Entries?.[0]?.VisibilityTimeout, letThrough, answered });
        await gate;
        const result = await next(args);
        answer();
        return result;
      },
      { step: 'initialize' },
    );
    const timeoutsSent = () => renewals.map((r) => r.timeoutS);
    // setImmediate stays real: it runs once every promise the renewal settled has run its callbacks.
    const settled = () => new Promise((resolve) => setImmediate(resolve));
    // Only the interval is faked: the SDK's own timers and sockets stay real.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const stop = keepHidden(client, queue.url, 4, 5_000, () => [message!.ReceiptHandle!]);
      await vi.advanceTimersByTimeAsync(1_999);
      expect(timeoutsSent()).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(timeoutsSent()).toEqual([4]);
      // A renewal still waiting on SQS is not doubled by the next tick.
      await vi.advanceTimersByTimeAsync(2_000);
      expect(timeoutsSent()).toEqual([4]);
      renewals[0]!.letThrough();
      await renewals[0]!.answered;
      await settled();
      await vi.advanceTimersByTimeAsync(2_000);
      expect(timeoutsSent()).toEqual([4, 4]);
      // Stopping while the second is in flight resolves only once SQS answered it (the gate holds it until then).
      let stopped = false;
      const stopping = stop().then(() => {
        stopped = true;
      });
      await settled();
      expect(stopped).toBe(false);
      renewals[1]!.letThrough();
      await stopping;
      await vi.advanceTimersByTimeAsync(10_000);
      expect(timeoutsSent()).toEqual([4, 4]);
    } finally {
      vi.useRealTimers();
      client.destroy();
    }
  });
});
