import { createHash, randomUUID } from 'node:crypto';
import type { SQSEvent, SQSRecord } from 'aws-lambda';

/** The source queue the records claim to come from; the endpoint server's local SQS holds it. */
export const QUEUE_NAME = 'ingest-fanout-bench';
const QUEUE_ARN = `arn:aws:sqs:us-east-1:123456789012:${QUEUE_NAME}`;

/** A valid CloudEvents 1.0 structured-mode JSON body of about 300 bytes, like an order event. */
export function cloudEventBody(seq: number): string {
  return JSON.stringify({
    specversion: '1.0',
    id: randomUUID(),
    source: '/bench/orders',
    type: 'com.example.order.created',
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data: {
      orderId: `ord-${seq.toString().padStart(8, '0')}`,
      customerId: `cus-${(seq % 977).toString().padStart(6, '0')}`,
      amount: Math.round(((seq * 37) % 100_000) + 99) / 100,
      currency: 'EUR',
      items: [{ sku: `SKU-${seq % 131}`, qty: 1 + (seq % 3) }],
    },
  });
}

export function sqsRecord(seq: number, body = cloudEventBody(seq)): SQSRecord {
  const now = Date.now();
  return {
    messageId: randomUUID(),
    receiptHandle: `AQEB${createHash('sha256').update(String(seq)).digest('base64')}${randomUUID()}`,
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(now - 50),
      SenderId: 'AIDAIENQZJOLO23YVJ4VO',
      ApproximateFirstReceiveTimestamp: String(now),
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(body).digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN: QUEUE_ARN,
    awsRegion: 'us-east-1',
  };
}

/** A standard-queue batch of `n` records, each a distinct valid CloudEvent. */
export function sqsEvent(n: number): SQSEvent {
  return { Records: Array.from({ length: n }, (_, i) => sqsRecord(i)) };
}

/** A Lambda context whose deadline is `timeoutMs` from now: the test suite's own. */
export { lambdaContext } from '../support/events';
