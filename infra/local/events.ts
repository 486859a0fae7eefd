import { randomBytes } from 'node:crypto';
import { type MessageAttributeValue, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';

/** Message attributes every sample message carries, so a message can be recognised wherever it ends up. */
export const DEMO_ID_ATTRIBUTE = 'demo.id';
export const DEMO_KIND_ATTRIBUTE = 'demo.kind';
export const SAMPLE_SOURCE = 'urn:ingest-fanout:local-demo';

export type MalformedKind = 'not-json' | 'not-object' | 'missing-specversion' | 'bad-time' | 'bad-extension-name';
const MALFORMED_KINDS: MalformedKind[] = [
  'not-json',
  'not-object',
  'missing-specversion',
  'bad-time',
  'bad-extension-name',
];

export interface SampleMessage {
  /** Unique per message: the CloudEvent id for valid ones, a marker for malformed ones. */
  demoId: string;
  valid: boolean;
  body: string;
  /** For malformed messages: what is wrong with it. */
  malformed?: MalformedKind;
}

/** A short random prefix that keeps the ids of two runs apart. */
export function newRunId(): string {
  return randomBytes(4).toString('hex');
}

/** A CloudEvents 1.0 event in JSON structured format, the kind the pipeline delivers. */
export function sampleEvent(id: string, n: number): Record<string, unknown> {
  return {
    specversion: '1.0',
    id,
    source: SAMPLE_SOURCE,
    // Every fourth is another kind of event, so endpoints files with type filters route them differently.
    type: n % 4 === 3 ? 'com.example.customer.updated' : 'com.example.order.created',
    subject: `orders/${n}`,
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data: { orderId: `o-${n}`, amount: Math.round((10 + (n % 90)) * 100) / 100, currency: 'EUR' },
  };
}

export function validMessages(count: number, runId: string, first = 0): SampleMessage[] {
  return Array.from({ length: count }, (_, i) => {
    const n = first + i;
    const demoId = `${runId}-${n}`;
    return { demoId, valid: true, body: JSON.stringify(sampleEvent(demoId, n)) };
  });
}

function malformedBody(kind: MalformedKind, demoId: string): string {
  const event = sampleEvent(demoId, 0);
  switch (kind) {
    case 'not-json':
      return `this is not JSON (${demoId})`;
    case 'not-object':
      return JSON.stringify([demoId]);
    case 'missing-specversion': {
      const { specversion: _, ...rest } = event;
      return JSON.stringify(rest);
    }
    case 'bad-time':
      return JSON.stringify({ ...event, time: 'yesterday' });
    case 'bad-extension-name':
      return JSON.stringify({ ...event, 'Bad-Name': 'x' });
  }
}

/** Messages the pipeline must refuse and quarantine: each kind of malformed body in turn. */
export function malformedMessages(count: number, runId: string, first = 0): SampleMessage[] {
  return Array.from({ length: count }, (_, i) => {
    const n = first + i;
    const malformed = MALFORMED_KINDS[n % MALFORMED_KINDS.length]!;
    const demoId = `${runId}-bad-${n}`;
    return { demoId, valid: false, malformed, body: malformedBody(malformed, demoId) };
  });
}

/** Spreads the second list evenly through the first. */
export function interleave<T>(many: T[], few: T[]): T[] {
  if (few.length === 0) return [...many];
  const out: T[] = [];
  const step = (many.length + few.length) / few.length;
  let next = 0;
  for (let i = 0, m = 0, f = 0; i < many.length + few.length; i++) {
    if (f < few.length && i >= Math.floor(next)) {
      out.push(few[f++]!);
      next += step;
    } else out.push(many[m++]!);
  }
  return out;
}

/** SendMessageBatch refused entries; the message says which and why. */
export class SendError extends Error {
  override readonly name = 'SendError';
  constructor(
    readonly queueUrl: string,
    readonly failed: { demoId: string; error: string }[],
  ) {
    const sample = failed
      .slice(0, 3)
      .map((f) => `${f.demoId}: ${f.error}`)
      .join('; ');
    super(
      `${failed.length} message(s) were not sent to ${queueUrl} (${sample}): check the queue URL, that the queue ` +
        'exists and the credentials may sqs:SendMessage to it',
    );
  }
}

function attributes(message: SampleMessage): Record<string, MessageAttributeValue> {
  return {
    [DEMO_ID_ATTRIBUTE]: { DataType: 'String', StringValue: message.demoId },
    [DEMO_KIND_ATTRIBUTE]: { DataType: 'String', StringValue: message.valid ? 'valid' : 'malformed' },
  };
}

export interface SendOptions {
  /** SendMessageBatch calls in flight at once. Default 8. */
  parallel?: number;
  /** Called after each batch with the number sent so far. */
  onProgress?: (sent: number) => void;
  /** Stops starting new batches; the calls in flight finish, so the count returned is what SQS took. */
  signal?: AbortSignal;
}

/** Sends the messages 10 per SendMessageBatch; throws SendError listing any SQS refused. */
export async function sendMessages(
  client: SQSClient,
  queueUrl: string,
  messages: SampleMessage[],
  options: SendOptions = {},
): Promise<number> {
  const batches: SampleMessage[][] = [];
  for (let i = 0; i < messages.length; i += 10) batches.push(messages.slice(i, i + 10));
  const failed: { demoId: string; error: string }[] = [];
  let sent = 0;
  let next = 0;
  const worker = async () => {
    while (next < batches.length && !options.signal?.aborted) {
      const batch = batches[next++]!;
      const response = await client.send(
        new SendMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: batch.map((message, index) => ({
            Id: String(index),
            MessageBody: message.body,
            MessageAttributes: attributes(message),
          })),
        }),
      );
      for (const failure of response.Failed ?? []) {
        failed.push({ demoId: batch[Number(failure.Id)]?.demoId ?? '?', error: `${failure.Code}: ${failure.Message}` });
      }
      sent += response.Successful?.length ?? 0;
      options.onProgress?.(sent);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.parallel ?? 8) }, worker));
  if (failed.length > 0) throw new SendError(queueUrl, failed);
  return sent;
}
