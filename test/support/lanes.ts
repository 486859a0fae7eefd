import type { SQSRecord } from 'aws-lambda';
import { idempotencyKey } from '../../lib/index';
import { encodeEnvelope, LANE_ATTRIBUTE, type LaneEnvelope } from '../../lib/lanes';
import { cloudEvent, eventRecord } from './events';

/**
 * A message as it sits in `endpoint`'s lane, the queue named `queueName`, as its event source hands it to the function:
 * due now, first failed a minute ago, one attempt made, unless `envelope` says otherwise. It is built, not received:
 * the lane would otherwise hold it in flight for the rest of the test.
 */
export function laneRecord(
  queueName: string,
  endpoint: string,
  id: string,
  envelope: Partial<LaneEnvelope> = {},
): SQSRecord {
  const event = cloudEvent(id);
  const record = eventRecord(id, { eventSourceARN: `arn:aws:sqs:us-east-1:123456789012:${queueName}` });
  const full: LaneEnvelope = {
    e: endpoint,
    k: idempotencyKey(String(event.source), id),
    f: Date.now() - 60_000,
    a: 1,
    d: Date.now(),
    ...envelope,
  };
  record.messageAttributes = {
    [LANE_ATTRIBUTE]: {
      dataType: 'String',
      stringValue: encodeEnvelope(full),
      stringListValues: [],
      binaryListValues: [],
    },
  };
  return record;
}
