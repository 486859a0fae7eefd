import { randomUUID } from 'node:crypto';
import { CreateTableCommand, DynamoDBClient, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import { inject } from 'vitest';
import { CLOSED_PORT, closedPortRefuses } from './endpoints';

/** Dummy credentials: the local servers accept any signature. */
export const LOCAL_AWS = {
  region: 'us-east-1',
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
} as const;

// Every request the suite makes has its own timeout (longer than SQS's longest long poll, 20 s): a local server that
// stops answering fails the request with a clear error instead of leaving the test to hit its own timeout.
const REQUEST_LIMITS = { requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 } };

/** An SQS client for the suite's local-aws-sqs (or another endpoint, e.g. a closed port for outages). */
export function localSqs(endpoint: string = inject('sqsEndpoint')): SQSClient {
  return new SQSClient({ ...LOCAL_AWS, ...REQUEST_LIMITS, endpoint, maxAttempts: 1 });
}

/** A DynamoDB client for the suite's dynalite (or another endpoint). */
export function localDynamoDb(endpoint: string = inject('dynamodbEndpoint')): DynamoDBClient {
  return new DynamoDBClient({ ...LOCAL_AWS, ...REQUEST_LIMITS, endpoint, maxAttempts: 1 });
}

/** A loopback base URL where nothing listens: every connection is refused (see CLOSED_PORT). */
export async function closedEndpoint(): Promise<string> {
  await closedPortRefuses();
  return `http://127.0.0.1:${CLOSED_PORT}`;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 12)}`;
}

export interface LocalQueue {
  url: string;
  arn: string;
  name: string;
}

/** Creates a uniquely named queue (FIFO when `fifo`), returning its URL and ARN. */
export async function createQueue(
  sqs: SQSClient,
  prefix: string,
  options: { fifo?: boolean; attributes?: Record<string, string> } = {},
): Promise<LocalQueue> {
  const name = `${uniqueName(prefix)}${options.fifo ? '.fifo' : ''}`;
  const attributes: Record<string, string> = { ...options.attributes };
  if (options.fifo) attributes.FifoQueue = 'true';
  const created = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  const url = created.QueueUrl!;
  const described = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  return { url, arn: described.Attributes!.QueueArn!, name };
}

/** A source queue with a DLQ (RedrivePolicy), so SQS itself dead-letters after `maxReceiveCount` receives. */
export async function createQueueWithDlq(
  sqs: SQSClient,
  prefix: string,
  maxReceiveCount = 3,
): Promise<{ queue: LocalQueue; dlq: LocalQueue }> {
  const dlq = await createQueue(sqs, `${prefix}-dlq`);
  const queue = await createQueue(sqs, prefix, {
    attributes: { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount }) },
  });
  return { queue, dlq };
}

export interface OutgoingMessage {
  body: string;
  attributes?: Record<string, MessageAttributeValue>;
  groupId?: string;
}

/** Sends messages 10 per call; resolves with their SQS message ids in order. */
export async function sendMessages(sqs: SQSClient, queueUrl: string, messages: OutgoingMessage[]): Promise<string[]> {
  const ids: string[] = [];
  // Batches of at most 10 messages and about 1 MiB (SendMessageBatch's limits).
  const batches: OutgoingMessage[][] = [[]];
  let bytes = 0;
  for (const message of messages) {
    const size = Buffer.byteLength(message.body) + 1_000;
    const current = batches[batches.length - 1]!;
    if (current.length === 10 || (current.length > 0 && bytes + size > 1_000_000)) {
      batches.push([message]);
      bytes = size;
    } else {
      current.push(message);
      bytes += size;
    }
  }
  for (const batch of batches) {
    if (batch.length === 0) continue;
    const response = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: batch.map((message, index) => ({
          Id: String(index),
          MessageBody: message.body,
          MessageAttributes: message.attributes,
          MessageGroupId: message.groupId,
          MessageDeduplicationId: message.groupId ? randomUUID() : undefined,
        })),
      }),
    );
    if (response.Failed?.length) throw new Error(`test setup: send failed: ${JSON.stringify(response.Failed)}`);
    const byIndex = new Map((response.Successful ?? []).map((s) => [Number(s.Id), s.MessageId!]));
    for (let index = 0; index < batch.length; index++) ids.push(byIndex.get(index)!);
  }
  return ids;
}

/**
 * Receives every message visible now (short polls until one comes back empty), with all attributes.
 * The messages stay in flight for `visibilityTimeoutS` (default 30 s); nothing is deleted.
 */
export async function receiveAll(
  sqs: SQSClient,
  queueUrl: string,
  options: { visibilityTimeoutS?: number; max?: number; waitTimeSeconds?: number } = {},
): Promise<Message[]> {
  const all: Message[] = [];
  const seen = new Set<string>();
  const max = options.max ?? 10_000;
  while (all.length < max) {
    const response = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: Math.min(10, max - all.length),
        WaitTimeSeconds: options.waitTimeSeconds ?? 0,
        VisibilityTimeout: options.visibilityTimeoutS ?? 30,
        MessageAttributeNames: ['All'],
        // local-aws-sqs only reads the older AttributeNames; SQS accepts both.
        AttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const messages = response.Messages ?? [];
    // With a zero visibility timeout the same message can come back at once (even twice in one response):
    // keep each message once, and stop when nothing new arrives.
    const fresh: Message[] = [];
    for (const message of messages) {
      if (seen.has(message.MessageId!)) continue;
      seen.add(message.MessageId!);
      fresh.push(message);
    }
    if (fresh.length === 0) break;
    all.push(...fresh);
  }
  return all;
}

/** A received message in the shape Lambda's SQS event source hands to the function. */
export function toLambdaRecord(message: Message, queueArn: string): SQSRecord {
  const attributes: SQSMessageAttributes = {};
  for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
    attributes[name] = {
      dataType: value.DataType ?? 'String',
      stringListValues: [],
      binaryListValues: [],
      ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
      ...(value.BinaryValue !== undefined ? { binaryValue: Buffer.from(value.BinaryValue).toString('base64') } : {}),
    };
  }
  const system = message.Attributes ?? {};
  return {
    messageId: message.MessageId!,
    receiptHandle: message.ReceiptHandle!,
    body: message.Body ?? '',
    attributes: {
      ApproximateReceiveCount: system.ApproximateReceiveCount ?? '1',
      SentTimestamp: system.SentTimestamp ?? String(Date.now()),
      SenderId: system.SenderId ?? 'AIDAEXAMPLE',
      ApproximateFirstReceiveTimestamp: system.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      ...(system.MessageGroupId ? { MessageGroupId: system.MessageGroupId } : {}),
      ...(system.MessageDeduplicationId ? { MessageDeduplicationId: system.MessageDeduplicationId } : {}),
      ...(system.SequenceNumber ? { SequenceNumber: system.SequenceNumber } : {}),
      ...(system.AWSTraceHeader ? { AWSTraceHeader: system.AWSTraceHeader } : {}),
    },
    messageAttributes: attributes,
    md5OfBody: message.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: LOCAL_AWS.region,
  };
}

/** Sends the messages, then receives them as Lambda records (like one poll of the event source). */
export async function receiveAsRecords(
  sqs: SQSClient,
  queue: LocalQueue,
  messages: OutgoingMessage[],
  visibilityTimeoutS = 30,
): Promise<SQSRecord[]> {
  await sendMessages(sqs, queue.url, messages);
  const received: Message[] = [];
  // Local SQS's short poll can answer empty under load while messages are there: long-poll for the rest, a few times.
  for (let attempt = 0; received.length < messages.length && attempt < 5; attempt++) {
    const max = messages.length - received.length;
    received.push(...(await receiveAll(sqs, queue.url, { visibilityTimeoutS, max, waitTimeSeconds: attempt && 1 })));
  }
  if (received.length !== messages.length) {
    throw new Error(`test setup: sent ${messages.length} messages to ${queue.name} but received ${received.length}`);
  }
  return received.map((message) => toLambdaRecord(message, queue.arn));
}

/** A ledger table in Powertools Idempotency's layout: string partition key `id`, TTL on `expiration`. */
export async function createLedgerTable(dynamodb: DynamoDBClient, prefix = 'ledger'): Promise<string> {
  const name = uniqueName(prefix);
  await dynamodb.send(
    new CreateTableCommand({
      TableName: name,
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  // dynalite answers CreateTable with CREATING and turns ACTIVE a moment later; a ledger call before that fails with
  // ResourceNotFoundException (the function then warns and delivers anyway), which made ledger tests flaky. Polled every
  // 20-200 ms: ACTIVE comes within milliseconds, and a 1 s poll cost a second for a third of the tables.
  await waitUntilTableExists({ client: dynamodb, maxWaitTime: 20, minDelay: 0.02, maxDelay: 0.2 }, { TableName: name });
  // The TTL (UpdateTimeToLive on 'expiration') is not set: dynalite does not implement it.
  return name;
}

/**
 * Polls `probe` until it returns a value other than undefined, every `intervalMs`, for at most `timeoutMs`;
 * throws with `what` when the time is up.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  { timeoutMs = 20_000, intervalMs = 100 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
