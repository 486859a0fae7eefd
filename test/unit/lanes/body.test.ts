import { randomBytes } from 'node:crypto';
import type { SendMessageBatchRequestEntry } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  fitLaneEntry,
  LANE_BODY_ATTRIBUTE,
  LaneMessageTooLargeError,
  SQS_MAX_MESSAGE_BYTES,
  unpackLaneBody,
} from '../../../lib/lanes/body';
import { entrySize } from '../../../lib/settle/quarantine';
import { sqsRecord } from '../../support/events';

const ENVELOPE = { 'ingest.lane': { DataType: 'String', StringValue: '{"e":"beta","k":"k","f":1,"a":1,"d":2}' } };

/** The entry as Lambda's event source would hand it back: Binary attributes base64. */
function asReceived(entry: SendMessageBatchRequestEntry): SQSRecord {
  const record = sqsRecord(entry.MessageBody!);
  record.messageAttributes = Object.fromEntries(
    Object.entries(entry.MessageAttributes ?? {}).map(([name, value]) => [
      name,
      {
        dataType: value.DataType!,
        stringListValues: [],
        binaryListValues: [],
        ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
        ...(value.BinaryValue !== undefined ? { binaryValue: Buffer.from(value.BinaryValue).toString('base64') } : {}),
      },
    ]),
  );
  return record;
}

describe('a lane message’s body beside its envelope', () => {
  it('leaves an entry that fits as it is', () => {
    const entry = { Id: '0', MessageBody: '{"id":"small"}', MessageAttributes: ENVELOPE };
    expect(fitLaneEntry(entry)).toBe(entry);
  });

  it('leaves an entry of exactly SQS’s largest size as it is; one byte more is packed, in a Binary attribute', () => {
    const head = { Id: '0', MessageAttributes: ENVELOPE };
    const room = SQS_MAX_MESSAGE_BYTES - entrySize({ ...head, MessageBody: '' });
    const exact = { ...head, MessageBody: 'x'.repeat(room) };
    expect(fitLaneEntry(exact)).toBe(exact);
    const packed = fitLaneEntry({ ...head, MessageBody: 'x'.repeat(room + 1) });
    expect(packed.MessageAttributes?.['ingest.lane.body']?.DataType).toBe('Binary');
    expect(packed.MessageAttributes?.['ingest.lane']).toEqual(ENVELOPE['ingest.lane']);
    // Whoever reads the queue (the DLQ) learns where the event is.
    expect(JSON.parse(packed.MessageBody!)).toEqual({
      note: `the event body (${room + 1} bytes) is gzip'd in the 'ingest.lane.body' attribute`,
    });
  });

  it('packs a body that does not fit and unpacks it byte for byte (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 1, maxLength: 64 }), (chunk) => {
        // Whole copies only: cutting a string may split a surrogate pair, which SQS would not take either.
        const padded = chunk.repeat(Math.ceil(SQS_MAX_MESSAGE_BYTES / Buffer.byteLength(chunk)));
        const packed = fitLaneEntry({ Id: '0', MessageBody: padded, MessageAttributes: ENVELOPE });
        expect(entrySize(packed)).toBeLessThanOrEqual(SQS_MAX_MESSAGE_BYTES);
        const record = unpackLaneBody(asReceived(packed));
        expect(record.body).toBe(padded);
        expect(Object.keys(record.messageAttributes)).toEqual(['ingest.lane']);
      }),
      { numRuns: 10 },
    );
  });

  it('refuses, naming both sizes, what does not fit even gzip’d', () => {
    // Random bytes do not compress: 1.5 MiB of them, base64, stays over the limit packed.
    const body = randomBytes(1_200_000).toString('base64');
    const fit = () => fitLaneEntry({ Id: '0', MessageBody: body, MessageAttributes: ENVELOPE });
    expect(fit).toThrow(LaneMessageTooLargeError);
    expect(fit).toThrow(expect.objectContaining({ name: 'LaneMessageTooLargeError' }));
    expect(fit).toThrow(/lower MAX_EVENT_BYTES or have the producer send smaller events\)$/);
    expect(fit).toThrow(new RegExp(`${body.length} bytes cannot park.*over SQS's ${SQS_MAX_MESSAGE_BYTES}`));
  });

  it('leaves a record without the attribute, or with one that does not unzip, as it is', () => {
    const plain = sqsRecord('{"id":"plain"}');
    expect(unpackLaneBody(plain)).toBe(plain);
    // A hand-built record may have no attributes at all.
    const bare = { ...plain, messageAttributes: undefined } as unknown as SQSRecord;
    expect(unpackLaneBody(bare)).toBe(bare);
    const broken = asReceived({
      Id: '0',
      MessageBody: '{}',
      MessageAttributes: { [LANE_BODY_ATTRIBUTE]: { DataType: 'Binary', BinaryValue: Buffer.from('not gzip') } },
    });
    expect(unpackLaneBody(broken)).toBe(broken);
  });
});
