import type { MessageAttributeValue, SendMessageBatchRequestEntry } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { afterAll, describe, expect, it } from 'vitest';
import {
  batchEntries,
  createQuarantine,
  entrySize,
  QUARANTINE_ATTRIBUTES as Q,
  QuarantineError,
  quarantineAttributes,
  readQuarantineAttributes,
} from '../../../lib/settle/quarantine';
import type { QuarantineItem } from '../../../lib/types';
import {
  closedEndpoint,
  createQueue,
  localSqs,
  type OutgoingMessage,
  receiveAll,
  receiveAsRecords,
} from '../../support/aws';
import { sqsRecord } from '../../support/events';

const sqs = localSqs();
afterAll(() => sqs.destroy());

const signal = () => AbortSignal.timeout(15_000);
const text = (value: string): MessageAttributeValue => ({ DataType: 'String', StringValue: value });

async function poisonRecords(messages: OutgoingMessage[], fifo = false): Promise<SQSRecord[]> {
  const source = await createQueue(sqs, 'source', { fifo });
  return receiveAsRecords(sqs, source, messages);
}

function stringAttributes(attributes: Record<string, MessageAttributeValue> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(attributes ?? {}).map(([name, value]) => [name, value.StringValue ?? '']));
}

describe.concurrent('createQuarantine on local SQS', () => {
  it('lands poison bodies byte for byte with their original attributes and the reasons', async () => {
    const bodies = [
      'not json {',
      '{"specversion":"0.3"}',
      '  padded\twith\nwhitespace  ',
      'ünïcödé ✓ 🧪 \u00a0 end',
      'x'.repeat(200_000),
    ];
    const binary = Uint8Array.from([0, 1, 2, 254, 255]);
    const records = await poisonRecords(
      bodies.map((body) => ({
        body,
        attributes: {
          tenant: text('acme'),
          priority: { DataType: 'Number', StringValue: '7' },
          blob: { DataType: 'Binary', BinaryValue: binary },
        },
      })),
    );
    const quarantineQueue = await createQueue(sqs, 'quarantine');
    const items: QuarantineItem[] = records.map((record) => ({
      record,
      reason: 'invalid-cloudevent',
      detail: 'specversion: must be "1.0"',
    }));

    const quarantined = await createQuarantine(sqs, quarantineQueue.url).send(items, signal());

    expect(quarantined).toEqual(new Set(records.map((r) => r.messageId)));
    const landed = await receiveAll(sqs, quarantineQueue.url);
    expect(landed.map((m) => m.Body).sort()).toEqual([...bodies].sort());
    for (const message of landed) {
      const record = records.find((r) => r.body === message.Body)!;
      const attributes = message.MessageAttributes!;
      expect(Buffer.from(attributes.blob!.BinaryValue!)).toEqual(Buffer.from(binary));
      expect(attributes.priority).toMatchObject({ DataType: 'Number', StringValue: '7' });
      expect(stringAttributes(attributes)).toMatchObject({
        tenant: 'acme',
        [Q.reason]: 'invalid-cloudevent',
        [Q.detail]: 'specversion: must be "1.0"',
        [Q.messageId]: record.messageId,
        [Q.sourceQueue]: record.eventSourceARN,
        [Q.receiveCount]: '1',
      });
      expect(attributes[Q.endpoint]).toBeUndefined();
      expect(attributes[Q.status]).toBeUndefined();
    }
  });

  it('names the endpoint and status that rejected the event and keeps the X-Ray trace header', async () => {
    const [record] = await poisonRecords([{ body: '{"valid":"enough"}' }]);
    const quarantineQueue = await createQueue(sqs, 'quarantine-rej');
    const trace = 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1';
    record!.attributes.AWSTraceHeader = trace;
    await createQuarantine(sqs, quarantineQueue.url).send(
      [
        {
          record: record!,
          reason: 'rejected-by-endpoint',
          detail: 'HTTP 422 from audit',
          endpoint: 'audit',
          status: 422,
        },
      ],
      signal(),
    );
    const [landed] = await receiveAll(sqs, quarantineQueue.url);
    expect(stringAttributes(landed!.MessageAttributes)).toMatchObject({
      [Q.reason]: 'rejected-by-endpoint',
      [Q.endpoint]: 'audit',
      [Q.status]: '422',
      [Q.detail]: 'HTTP 422 from audit',
    });
    expect(landed!.Attributes?.AWSTraceHeader).toBe(trace);
  });

  it('splits sends at 10 messages and at 1 MiB per call', async () => {
    const many = Array.from({ length: 23 }, (_, i) => ({ body: `poison-${i}` }));
    // Four 400 KB bodies: any two exceed SendMessageBatch's 1 MiB, which local SQS enforces.
    const big = Array.from({ length: 4 }, (_, i) => ({ body: `${i}`.repeat(400_000) }));
    const records = await poisonRecords([...many, ...big]);
    const quarantineQueue = await createQueue(sqs, 'quarantine-many');
    const quarantined = await createQuarantine(sqs, quarantineQueue.url).send(
      records.map((record) => ({ record, reason: 'not-json', detail: 'the body is not JSON' })),
      signal(),
    );
    expect(quarantined.size).toBe(27);
    const landed = await receiveAll(sqs, quarantineQueue.url);
    expect(landed.map((m) => m.Body).sort()).toEqual([...many, ...big].map((m) => m.body).sort());
  });

  it('keeps FIFO order keys: the source message group and a deduplication id per record', async () => {
    const records = await poisonRecords(
      [
        { body: 'a1', groupId: 'tenant-a' },
        { body: 'b1', groupId: 'tenant-b' },
      ],
      true,
    );
    const quarantineQueue = await createQueue(sqs, 'quarantine', { fifo: true });
    const quarantine = createQuarantine(sqs, quarantineQueue.url);
    const items = records.map((record): QuarantineItem => ({ record, reason: 'not-json', detail: 'x' }));
    expect((await quarantine.send(items, signal())).size).toBe(2);
    // A retried send of the same records (say, after a lost response) is deduplicated by SQS.
    expect((await quarantine.send(items, signal())).size).toBe(2);
    const landed = await receiveAll(sqs, quarantineQueue.url);
    expect(landed.map((m) => [m.Body, m.Attributes?.MessageGroupId]).sort()).toEqual([
      ['a1', 'tenant-a'],
      ['b1', 'tenant-b'],
    ]);
  });

  it('leaves out the records SQS refuses and resolves with the others', async () => {
    const records = await poisonRecords([{ body: 'small' }, { body: 'y'.repeat(5_000) }]);
    const quarantineQueue = await createQueue(sqs, 'quarantine-small', { attributes: { MaximumMessageSize: '1024' } });
    const quarantined = await createQuarantine(sqs, quarantineQueue.url).send(
      records.map((record) => ({ record, reason: 'not-json', detail: 'x' })),
      signal(),
    );
    expect(quarantined).toEqual(new Set([records.find((r) => r.body === 'small')!.messageId]));
  });

  it('rejects with a QuarantineError naming every record when the queue is unreachable', async () => {
    const records = await poisonRecords([{ body: 'one' }, { body: 'two' }]);
    const down = localSqs(await closedEndpoint());
    const queueUrl = `${await closedEndpoint()}/123456789012/quarantine`;
    const error = await createQuarantine(down, queueUrl)
      .send(
        records.map((record) => ({ record, reason: 'not-json', detail: 'x' })),
        signal(),
      )
      .catch((e: unknown) => e);
    down.destroy();
    expect(error).toBeInstanceOf(QuarantineError);
    expect((error as QuarantineError).failures.map((f) => f.messageId).sort()).toEqual(
      records.map((r) => r.messageId).sort(),
    );
    expect((error as QuarantineError).message).toMatch(/QUARANTINE_QUEUE_URL/);
    expect((error as QuarantineError).name).toBe('QuarantineError');
    expect((error as QuarantineError).message).toContain(
      `could not send 2 record(s) to the quarantine queue ${queueUrl} (`,
    );
    expect((error as QuarantineError).cause).toBeInstanceOf(Error);
    for (const failure of (error as QuarantineError).failures)
      expect(failure.error).toMatch(/^\w*Error: .*ECONNREFUSED/);
  });

  it('rejects with a QuarantineError naming each record when SQS refuses every entry', async () => {
    const records = await poisonRecords([{ body: 'a'.repeat(5_000) }, { body: 'b'.repeat(5_000) }]);
    const quarantineQueue = await createQueue(sqs, 'quarantine-tiny', { attributes: { MaximumMessageSize: '1024' } });
    const error = await createQuarantine(sqs, quarantineQueue.url)
      .send(
        records.map((record) => ({ record, reason: 'not-json', detail: 'x' })),
        signal(),
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QuarantineError);
    const failures = (error as QuarantineError).failures;
    expect(failures.map((f) => f.messageId).sort()).toEqual(records.map((r) => r.messageId).sort());
    for (const failure of failures) expect(failure.error).toMatch(/^\w+: \S/);
  });

  it('sends nothing once the deadline has passed', async () => {
    const [record] = await poisonRecords([{ body: 'late' }]);
    const quarantineQueue = await createQueue(sqs, 'quarantine-late');
    await expect(
      createQuarantine(sqs, quarantineQueue.url).send(
        [{ record: record!, reason: 'not-json', detail: 'x' }],
        AbortSignal.abort(),
      ),
    ).rejects.toBeInstanceOf(QuarantineError);
    expect(await receiveAll(sqs, quarantineQueue.url)).toEqual([]);
  });

  it('copies attributes whose unused value field is null (string and binary)', async () => {
    const [record] = await poisonRecords([{ body: 'nulls' }]);
    const quarantineQueue = await createQueue(sqs, 'quarantine-nulls');
    const binary = Uint8Array.from([1, 2, 3]);
    // Lambda's record types allow a missing value field; null is handled the same way.
    record!.messageAttributes = {
      tenant: { dataType: 'String', stringValue: 'acme', binaryValue: null },
      blob: { dataType: 'Binary', binaryValue: Buffer.from(binary).toString('base64'), stringValue: null },
    } as unknown as SQSRecord['messageAttributes'];
    await createQuarantine(sqs, quarantineQueue.url).send(
      [{ record: record!, reason: 'not-json', detail: 'x' }],
      signal(),
    );
    const [landed] = await receiveAll(sqs, quarantineQueue.url);
    expect(landed!.MessageAttributes?.tenant).toMatchObject({ DataType: 'String', StringValue: 'acme' });
    expect(Buffer.from(landed!.MessageAttributes!.blob!.BinaryValue!)).toEqual(Buffer.from(binary));
  });

  it('rejects with a QuarantineError when the queue does not exist', async () => {
    const [record] = await poisonRecords([{ body: 'orphan' }]);
    const queueUrl = `${(await createQueue(sqs, 'exists')).url.replace(/[^/]+$/, '')}no-such-queue`;
    await expect(
      createQuarantine(sqs, queueUrl).send([{ record: record!, reason: 'not-json', detail: 'x' }], signal()),
    ).rejects.toBeInstanceOf(QuarantineError);
  });
});

describe('quarantineAttributes', () => {
  const record = (count: number, extra: Record<string, string> = {}): SQSRecord =>
    ({
      messageId: 'm-1',
      receiptHandle: 'rh',
      body: 'b',
      attributes: {
        ApproximateReceiveCount: '2',
        SentTimestamp: '1',
        SenderId: 's',
        ApproximateFirstReceiveTimestamp: '1',
      },
      messageAttributes: Object.fromEntries([
        ...Array.from({ length: count }, (_, i) => [`attr${i}`, { dataType: 'String', stringValue: `v${i}` }]),
        ...Object.entries(extra).map(([name, value]) => [name, { dataType: 'String', stringValue: value }]),
      ]),
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:orders',
      awsRegion: 'us-east-1',
    }) satisfies SQSRecord;
  const rejected = (r: SQSRecord): QuarantineItem => ({
    record: r,
    reason: 'rejected-by-endpoint',
    detail: 'HTTP 400',
    endpoint: 'audit',
    status: 400,
  });

  it('sanitises reasons to the characters SQS accepts and cuts them on code points (issue 9, defect 8)', () => {
    const allowed = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
    const detail = `bad\u0001name\u0000 \uD800 \uFFFF ok ${'🚀'.repeat(2000)}`;
    const item: QuarantineItem = { record: record(0), reason: 'invalid-cloudevent', detail };
    const value = quarantineAttributes(item)[Q.detail]!.StringValue!;
    expect(value).toMatch(allowed);
    expect(value.startsWith('bad\uFFFDname\uFFFD \uFFFD \uFFFD ok 🚀')).toBe(true);
    expect(Array.from(value)).toHaveLength(1000);
    // A cut through the middle of a surrogate pair is what a UTF-16 slice would do.
    const odd = quarantineAttributes({
      record: record(0),
      reason: 'invalid-cloudevent',
      detail: `x${'🚀'.repeat(1000)}`,
    });
    expect(odd[Q.detail]!.StringValue!).toMatch(allowed);
    expect(odd[Q.detail]!.StringValue!.endsWith('🚀')).toBe(true);
  });

  it('writes no detail attribute for an empty detail (SQS refuses empty values)', () => {
    expect(quarantineAttributes({ record: record(0), reason: 'not-json', detail: '' })[Q.detail]).toBeUndefined();
  });

  it('uses separate quarantine.* attributes while everything fits in SQS’s 10', () => {
    const attributes = quarantineAttributes(rejected(record(3)));
    expect(Object.keys(attributes)).toHaveLength(10);
    expect(attributes[Q.status]?.StringValue).toBe('400');
  });

  it('folds the reasons into one JSON attribute when the originals need the room', () => {
    const attributes = quarantineAttributes(rejected(record(6)));
    expect(Object.keys(attributes).sort()).toEqual(
      [...Array.from({ length: 6 }, (_, i) => `attr${i}`), Q.combined].sort(),
    );
    expect(JSON.parse(attributes[Q.combined]!.StringValue!)).toEqual({
      reason: 'rejected-by-endpoint',
      detail: 'HTTP 400',
      endpoint: 'audit',
      status: '400',
      sourceQueue: 'arn:aws:sqs:us-east-1:123456789012:orders',
      messageId: 'm-1',
      receiveCount: '2',
    });
  });

  it('with 10 originals keeps 9 and names the one left out', () => {
    const attributes = quarantineAttributes(rejected(record(10)));
    expect(Object.keys(attributes)).toHaveLength(10);
    expect(attributes.attr9).toBeUndefined();
    expect(JSON.parse(attributes[Q.combined]!.StringValue!).droppedAttributes).toEqual(['attr9']);
  });

  // Hostile review (rev9): a lane message carries up to 8 producer attributes, its envelope and, gzip'd, the event
  // itself; quarantined with 10, the last-named was dropped: the event body when SQS listed it last.
  it('with 10 originals drops a producer’s attribute, never the lane’s own (ingest.lane, its packed body)', () => {
    const lane = record(8, { 'ingest.lane': '{}', 'ingest.lane.body': 'gz' });
    const attributes = quarantineAttributes(rejected(lane));
    expect(Object.keys(attributes)).toHaveLength(10);
    expect(attributes['ingest.lane.body']?.StringValue).toBe('gz');
    expect(attributes['ingest.lane']?.StringValue).toBe('{}');
    expect(JSON.parse(attributes[Q.combined]!.StringValue!).droppedAttributes).toEqual(['attr7']);
  });

  it('a redriven message quarantined again keeps all 9 of its producer’s attributes: the redrive marker goes first', () => {
    const attributes = quarantineAttributes(rejected(record(9, { 'redrive.from': 'arn:aws:sqs:us-east-1:1:dlq' })));
    expect(Object.keys(attributes).filter((name) => name.startsWith('attr'))).toHaveLength(9);
    expect(attributes['redrive.from']).toBeUndefined();
    expect(JSON.parse(attributes[Q.combined]!.StringValue!).droppedAttributes).toBeUndefined();
  });

  it('replaces the reasons of an earlier quarantine instead of stacking them', () => {
    const attributes = quarantineAttributes(
      rejected(record(1, { [Q.reason]: 'not-json', [Q.detail]: 'old', [Q.combined]: '{"reason":"old"}' })),
    );
    expect(attributes[Q.reason]?.StringValue).toBe('rejected-by-endpoint');
    expect(attributes[Q.detail]?.StringValue).toBe('HTTP 400');
    expect(attributes[Q.combined]).toBeUndefined();
  });

  it('drops every quarantine.* a producer set: the source queue recorded is the record’s own (issue 9, defect 9)', () => {
    const forged = record(1, {
      [Q.sourceQueue]: 'arn:aws:sqs:us-east-1:999999999999:elsewhere',
      [Q.messageId]: 'forged',
      'quarantine.extra': 'x',
    });
    const attributes = quarantineAttributes(rejected(forged));
    expect(attributes[Q.sourceQueue]?.StringValue).toBe(forged.eventSourceARN);
    expect(attributes[Q.messageId]?.StringValue).toBe('m-1');
    expect(attributes['quarantine.extra']).toBeUndefined();
  });
});

describe('entrySize and batchEntries (SendMessageBatch limits)', () => {
  const entry = (bodyBytes: number): { entry: SendMessageBatchRequestEntry } => ({
    entry: { Id: '0', MessageBody: 'x'.repeat(bodyBytes) },
  });

  it('counts the body and each attribute name, type and value, as SQS does', () => {
    expect(
      entrySize({
        Id: '0',
        MessageBody: 'é',
        MessageAttributes: {
          n: { DataType: 'String', StringValue: 'xyz' },
          b: { DataType: 'Binary', BinaryValue: new Uint8Array(4) },
        },
      }),
    ).toBe(2 + (1 + 6 + 3) + (1 + 6 + 4));
  });

  it('at most 10 entries per group', () => {
    expect(batchEntries(Array.from({ length: 10 }, () => entry(1))).map((g) => g.length)).toEqual([10]);
    expect(batchEntries(Array.from({ length: 21 }, () => entry(1))).map((g) => g.length)).toEqual([10, 10, 1]);
  });

  it('at most 1 MiB per group; an entry too big on its own goes alone, never after an empty group', () => {
    const half = 524_288;
    expect(batchEntries([entry(half), entry(half)]).map((g) => g.length)).toEqual([2]);
    expect(batchEntries([entry(half), entry(half + 1)]).map((g) => g.length)).toEqual([1, 1]);
    expect(batchEntries([entry(2_000_000), entry(1)]).map((g) => g.length)).toEqual([1, 1]);
  });
});

describe('readQuarantineAttributes (what `npm run dlq` shows)', () => {
  const item = (attributes: Record<string, string>): QuarantineItem => ({
    record: sqsRecord('{}', {
      messageAttributes: Object.fromEntries(
        Object.entries(attributes).map(([name, value]) => [
          name,
          { dataType: 'String', stringValue: value, stringListValues: [], binaryListValues: [] },
        ]),
      ),
    }),
    reason: 'rejected-by-endpoint',
    detail: 'audit answered 422',
    endpoint: 'audit',
    status: 422,
  });
  const expected = { reason: 'rejected-by-endpoint', detail: 'audit answered 422', endpoint: 'audit', status: '422' };

  it('reads back the separate quarantine.* attributes', () => {
    const written = quarantineAttributes(item({ tenant: 'acme' }));
    expect(written[Q.reason]).toBeDefined();
    expect(readQuarantineAttributes(written)).toMatchObject(expected);
  });

  it('reads back the combined JSON attribute used when the originals leave no room', () => {
    const originals = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`a${i}`, 'v']));
    const written = quarantineAttributes(item(originals));
    expect(written[Q.reason]).toBeUndefined();
    // Only the reasons: not the list of dropped attributes, not the JSON itself.
    expect(readQuarantineAttributes(written)).toEqual({
      ...expected,
      sourceQueue: 'arn:aws:sqs:us-east-1:123456789012:ingest',
      messageId: expect.any(String),
      receiveCount: '1',
    });
  });

  it('says undefined for a message SQS dead-lettered itself (no reasons)', () => {
    expect(readQuarantineAttributes({ tenant: text('acme') })).toBeUndefined();
    expect(readQuarantineAttributes({ [Q.combined]: text('not json') })).toBeUndefined();
    expect(readQuarantineAttributes(undefined)).toBeUndefined();
  });

  it('ignores a combined attribute that is JSON but not an object', () => {
    expect(readQuarantineAttributes({ [Q.combined]: text('"ab"'), [Q.reason]: text('not-json') })).toEqual({
      reason: 'not-json',
    });
  });
});
