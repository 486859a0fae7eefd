import { gunzipSync, gzipSync } from 'node:zlib';
import type { SendMessageBatchRequestEntry } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { entrySize } from '../settle/quarantine';

/** Holds the event body, gzip'd, when the body and the lane envelope together pass SQS's message size. */
export const LANE_BODY_ATTRIBUTE = 'ingest.lane.body';

/** SQS's largest message (since August 2025), body and message attributes together. */
export const SQS_MAX_MESSAGE_BYTES = 1_048_576;

/** The body of a lane message whose event is in LANE_BODY_ATTRIBUTE: says where, for whoever reads the queue. */
function placeholder(bytes: number): string {
  return JSON.stringify({
    note: `the event body (${bytes} bytes) is gzip'd in the '${LANE_BODY_ATTRIBUTE}' attribute`,
  });
}

/** An entry SQS cannot take however it is packed: the event stays on the source path (retries, then its DLQ). */
export class LaneMessageTooLargeError extends Error {
  override readonly name = 'LaneMessageTooLargeError';
  constructor(
    readonly bodyBytes: number,
    readonly packedBytes: number,
  ) {
    super(
      `an event of ${bodyBytes} bytes cannot park: even gzip'd it is ${packedBytes} bytes with the lane envelope, over ` +
        `SQS's ${SQS_MAX_MESSAGE_BYTES}; it stays on the source queue's retries and then its DLQ (lower MAX_EVENT_BYTES ` +
        'or have the producer send smaller events)',
    );
  }
}

/**
 * The entry as is when SQS takes it; else its body gzip'd into a Binary attribute (SQS counts binary bytes as they
 * are) behind a short placeholder body. Throws LaneMessageTooLargeError when even that passes the limit.
 */
export function fitLaneEntry(entry: SendMessageBatchRequestEntry): SendMessageBatchRequestEntry {
  if (entrySize(entry) <= SQS_MAX_MESSAGE_BYTES) return entry;
  const body = Buffer.from(entry.MessageBody ?? '');
  const packed: SendMessageBatchRequestEntry = {
    ...entry,
    MessageBody: placeholder(body.length),
    MessageAttributes: {
      ...entry.MessageAttributes,
      [LANE_BODY_ATTRIBUTE]: { DataType: 'Binary', BinaryValue: gzipSync(body) },
    },
  };
  const size = entrySize(packed);
  if (size > SQS_MAX_MESSAGE_BYTES) throw new LaneMessageTooLargeError(body.length, size);
  return packed;
}

/**
 * The record as the producer sent it: a body that `fitLaneEntry` packed is unpacked and the attribute dropped.
 * A record without it (or with one that does not unzip) is returned as is.
 */
export function unpackLaneBody(record: SQSRecord): SQSRecord {
  const packed = record.messageAttributes?.[LANE_BODY_ATTRIBUTE]?.binaryValue;
  if (packed === undefined) return record;
  let body: string;
  try {
    body = gunzipSync(Buffer.from(packed, 'base64')).toString('utf8');
  } catch {
    // Not ours to read: the placeholder body then fails validation and is quarantined with the attribute kept.
    return record;
  }
  const { [LANE_BODY_ATTRIBUTE]: _packed, ...rest } = record.messageAttributes;
  return { ...record, body, messageAttributes: rest };
}
