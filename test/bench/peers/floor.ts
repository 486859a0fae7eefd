/**
 * The floor: the same POSTs (same headers, same bodies) sent straight from the batch by a bare pooled keep-alive
 * client with the handler's pool size, and nothing else: no validation, no bookkeeping, no deadline.
 */
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { CONTENT_TYPE, failures, USER_AGENT } from './runner';

/** Same header set and sizes as the handler's POST (the key is 64 hex characters), computed for free. */
export function floorHeaders(record: SQSRecord, length: number) {
  return {
    'content-type': CONTENT_TYPE,
    'content-length': String(length),
    'idempotency-key': record.md5OfBody + record.md5OfBody,
    'user-agent': USER_AGENT,
  };
}

/** Sends every (record, endpoint) POST at once through `post`; the pool queues what exceeds its connections. */
export async function sendAll(
  event: SQSEvent,
  endpoints: number,
  post: (i: number, body: Buffer, record: SQSRecord) => Promise<number>,
): Promise<SQSBatchResponse> {
  const ids = await Promise.all(
    event.Records.map(async (record) => {
      const body = Buffer.from(record.body);
      const statuses = await Promise.all(
        Array.from({ length: endpoints }, (_, i) => post(i, body, record).catch(() => 0)),
      );
      return statuses.every((s) => s >= 200 && s < 300) ? undefined : record.messageId;
    }),
  );
  return failures(ids);
}
