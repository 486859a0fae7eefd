import { randomUUID } from 'node:crypto';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';

export function cloudEvent(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    specversion: '1.0',
    id,
    source: 'urn:test:orders',
    type: 'com.example.order.created',
    time: '2026-11-25T10:00:00Z',
    datacontenttype: 'application/json',
    data: { orderId: id, total: 42 },
    ...extra,
  };
}

export function sqsRecord(body: string, overrides: Partial<SQSRecord> & { groupId?: string } = {}): SQSRecord {
  const { groupId, ...rest } = overrides;
  const messageId = rest.messageId ?? randomUUID();
  return {
    messageId,
    receiptHandle: `handle-${messageId}`,
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(Date.now()),
      SenderId: 'AIDATEST',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
      ...(groupId !== undefined
        ? { MessageGroupId: groupId, SequenceNumber: '1', MessageDeduplicationId: messageId }
        : {}),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:ingest',
    awsRegion: 'us-east-1',
    ...rest,
  };
}

export function eventRecord(id: string, overrides: Parameters<typeof sqsRecord>[1] = {}): SQSRecord {
  return sqsRecord(JSON.stringify(cloudEvent(id)), overrides);
}

export function sqsEvent(records: SQSRecord[]): SQSEvent {
  return { Records: records };
}

/** A Lambda-like context whose remaining time runs down from `timeoutMs`. */
export function lambdaContext(timeoutMs = 30_000): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'ingest',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:ingest',
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: '/aws/lambda/ingest',
    logStreamName: 'test',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}
