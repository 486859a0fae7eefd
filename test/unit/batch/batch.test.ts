import type { SQSRecord } from 'aws-lambda';
import { describe, expect, it, vi } from 'vitest';
import type { Delivered as FanoutResult } from '../../../lib/batch/batch';
import { type BatchOptions, outcomeOf, type ProcessedRecord, processBatch } from '../../../lib/batch/batch';
import type { DeliveryResult } from '../../../lib/delivery/delivery';
import { idempotencyKey, type ValidEvent } from '../../../lib/event/event';
import type { DeliveryFailure, FailureKind, RecordOutcome } from '../../../lib/types';
import { cloudEvent, eventRecord, sqsRecord } from '../../support/events';

const SOURCE = 'urn:test:orders';
const MAX = 1_048_576;

const ok = (endpoint: string): DeliveryResult => ({ ok: true, endpoint, attempts: 1, latencyMs: 3, status: 200 });
const fail = (endpoint: string, kind: FailureKind, extra: Partial<DeliveryFailure> = {}): DeliveryResult => ({
  ok: false,
  endpoint,
  kind,
  attempts: 1,
  ...extra,
});
const allOk: FanoutResult = { results: [ok('a'), ok('b')], skipped: [] };
const transient: FanoutResult = { results: [ok('a'), fail('b', 'transient', { status: 503 })], skipped: [] };
const rejected: FanoutResult = { results: [ok('a'), fail('b', 'rejected', { status: 400 })], skipped: [] };

interface Call {
  id: string;
  already: ReadonlySet<string> | undefined;
  resolve(result: FanoutResult): void;
}

/** A fake `deliver` the test answers by hand, one event at a time, recording the order of the calls. */
function manualDeliver() {
  const calls: Call[] = [];
  const deliver = (event: ValidEvent, already: ReadonlySet<string> | undefined) =>
    new Promise<FanoutResult>((resolve) => calls.push({ id: event.id, already, resolve }));
  const call = (id: string): Call => {
    const found = calls.find((entry) => entry.id === id);
    if (!found) throw new Error(`deliver was not called for ${id}; calls: ${calls.map((entry) => entry.id)}`);
    return found;
  };
  return { calls, deliver, call, ids: () => calls.map((entry) => entry.id) };
}

/** A fake `deliver` that answers at once from a table of event id → result (all delivered by default). */
function tableDeliver(table: Record<string, FanoutResult> = {}) {
  return vi.fn(async (event: ValidEvent, _already: ReadonlySet<string> | undefined) => table[event.id] ?? allOk);
}

/** Lets every pending promise callback run; the fakes do no I/O, so nothing else can be pending. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function options(deliver: BatchOptions['deliver'], extra: Partial<BatchOptions> = {}): BatchOptions {
  return { maxEventBytes: MAX, deliver, ...extra };
}

const kinds = (processed: ProcessedRecord[]) => processed.map((entry) => entry.outcome.kind);

describe('processBatch: parsing', () => {
  it('answers an empty batch with nothing and calls nothing', async () => {
    const deliver = tableDeliver();
    const lookup = vi.fn();
    expect(await processBatch([], options(deliver, { lookup }))).toEqual([]);
    expect(deliver).not.toHaveBeenCalled();
    expect(lookup).not.toHaveBeenCalled();
  });

  it('never delivers invalid records and reports their reason and detail', async () => {
    const records = [
      eventRecord('good-1'),
      sqsRecord(''),
      sqsRecord('{not json'),
      sqsRecord('[1,2,3]'),
      sqsRecord(JSON.stringify(cloudEvent('bad', { specversion: '0.3' }))),
      sqsRecord(JSON.stringify(cloudEvent('big', { data: 'x'.repeat(2000) }))),
      eventRecord('good-2'),
    ];
    const deliver = tableDeliver();
    const processed = await processBatch(records, { ...options(deliver), maxEventBytes: 1000 });
    expect(deliver.mock.calls.map(([event]) => event.id)).toEqual(['good-1', 'good-2']);
    expect(processed.map((entry) => entry.record)).toEqual(records);
    expect(processed.map((entry) => entry.outcome)).toEqual([
      { kind: 'delivered', delivered: ['a', 'b'], skipped: [] },
      { kind: 'invalid', reason: 'empty-body', detail: expect.any(String) },
      { kind: 'invalid', reason: 'not-json', detail: expect.stringContaining('not JSON') },
      { kind: 'invalid', reason: 'not-object', detail: expect.stringContaining('array') },
      { kind: 'invalid', reason: 'invalid-cloudevent', detail: expect.stringContaining('specversion') },
      { kind: 'invalid', reason: 'too-large', detail: expect.stringContaining('MAX_EVENT_BYTES') },
      { kind: 'delivered', delivered: ['a', 'b'], skipped: [] },
    ]);
    expect(processed[0]?.event).toMatchObject({ ok: true, id: 'good-1', key: idempotencyKey(SOURCE, 'good-1') });
    expect(processed[1]?.event).toMatchObject({ ok: false, reason: 'empty-body' });
  });
});

describe('processBatch: standard queues', () => {
  it('delivers every record at once, without waiting for any other', async () => {
    const fake = manualDeliver();
    const records = ['e1', 'e2', 'e3', 'e4'].map((id) => eventRecord(id));
    const pending = processBatch(records, options(fake.deliver));
    await settle();
    expect(fake.ids()).toEqual(['e1', 'e2', 'e3', 'e4']);
    fake.call('e3').resolve(transient);
    for (const id of ['e1', 'e2', 'e4']) fake.call(id).resolve(allOk);
    expect(kinds(await pending)).toEqual(['delivered', 'delivered', 'failed', 'delivered']);
  });

  it('delivers the same event (source + id) once; every copy shares its outcome', async () => {
    const records = [
      eventRecord('dup'),
      eventRecord('other'),
      // Same source and id, different bytes: still the same event.
      sqsRecord(JSON.stringify(cloudEvent('dup', { data: { changed: true } }))),
      eventRecord('dup'),
    ];
    const deliver = tableDeliver({ dup: transient });
    const processed = await processBatch(records, options(deliver));
    expect(deliver.mock.calls.map(([event]) => event.id)).toEqual(['dup', 'other']);
    expect(kinds(processed)).toEqual(['failed', 'delivered', 'failed', 'failed']);
    expect(processed[2]?.outcome).toEqual(processed[0]?.outcome);
    expect(processed[3]?.outcome).toEqual(processed[0]?.outcome);
  });

  it('records of one event routed to different endpoints are delivered per routing (issue 15, A5)', async () => {
    const typed = (type: string, groupId?: string) =>
      sqsRecord(JSON.stringify(cloudEvent('dup', { type })), groupId === undefined ? {} : { groupId });
    const routedTo = vi.fn((event: ValidEvent) => [event.type === 'refund' ? 'a' : 'b']);
    const records = [typed('refund'), typed('order'), typed('refund'), eventRecord('alone')];
    const deliver = tableDeliver();
    await processBatch(records, options(deliver, { routedTo }));
    expect(deliver.mock.calls.map(([event]) => `${event.id} ${event.type}`)).toEqual([
      'dup refund',
      'dup order',
      'alone com.example.order.created',
    ]);
    // An event seen once in the batch is not routed twice.
    expect(routedTo.mock.calls.map(([event]) => event.id)).toEqual(['dup', 'dup', 'dup']);
    const fifo = [typed('refund', 'G'), typed('order', 'G'), typed('refund', 'G')];
    const inGroup = tableDeliver();
    await processBatch(fifo, options(inGroup, { routedTo }));
    expect(inGroup.mock.calls.map(([event]) => event.type)).toEqual(['refund', 'order']);
    // Routed sets are compared name by name: ['a', 'b'] is not ['ab'].
    const byNames = tableDeliver();
    const names = (event: ValidEvent) => (event.type === 'refund' ? ['a', 'b'] : ['ab']);
    await processBatch([typed('refund'), typed('order')], options(byNames, { routedTo: names }));
    expect(byNames).toHaveBeenCalledTimes(2);
  });

  it('the same id from different sources is two events', async () => {
    const records = [eventRecord('x'), sqsRecord(JSON.stringify(cloudEvent('x', { source: 'urn:test:other' })))];
    const deliver = tableDeliver();
    await processBatch(records, options(deliver));
    expect(deliver).toHaveBeenCalledTimes(2);
  });
});

describe('processBatch: the delivery ledger lookup', () => {
  it('asks once, with the unique keys of the valid events, before delivering anything (every-delivery)', async () => {
    const order: string[] = [];
    const lookup = vi.fn(async (_keys: string[]) => {
      order.push('lookup');
      return new Map([[idempotencyKey(SOURCE, 'e1'), new Set(['a'])]]);
    });
    const deliver = vi.fn(async (event: ValidEvent, _already: ReadonlySet<string> | undefined) => {
      order.push(`deliver ${event.id}`);
      return allOk;
    });
    const records = [eventRecord('e1'), sqsRecord('nope'), eventRecord('e2'), eventRecord('e1')];
    await processBatch(records, options(deliver, { lookup, lookupFirstReceives: true }));
    expect(lookup).toHaveBeenCalledTimes(1);
    expect(lookup.mock.calls[0]?.[0]).toEqual([idempotencyKey(SOURCE, 'e1'), idempotencyKey(SOURCE, 'e2')]);
    expect(order[0]).toBe('lookup');
    // What the ledger knows is passed on: e1 already went to 'a'; nothing is known about e2.
    expect(deliver.mock.calls.map(([event, already]) => [event.id, already && [...already]])).toEqual([
      ['e1', ['a']],
      ['e2', undefined],
    ]);
  });

  it('by default asks only about redeliveries: a receive count above 1, or back from quarantine', async () => {
    const lookup = vi.fn(async (_keys: string[]) => new Map<string, Set<string>>());
    const again = (count: string) => ({
      attributes: { ...eventRecord('x').attributes, ApproximateReceiveCount: count },
    });
    const records = [
      eventRecord('first'),
      eventRecord('second', again('2')),
      eventRecord('redriven', {
        messageAttributes: { 'quarantine.reason': { dataType: 'String', stringValue: 'rejected-by-endpoint' } },
      }),
      eventRecord('combined', { messageAttributes: { quarantine: { dataType: 'String', stringValue: '{}' } } }),
      eventRecord('unrelated', { messageAttributes: { quarantined: { dataType: 'String', stringValue: 'no' } } }),
    ];
    await processBatch(records, options(tableDeliver(), { lookup }));
    expect(lookup.mock.calls[0]?.[0]).toEqual(
      ['second', 'redriven', 'combined'].map((id) => idempotencyKey(SOURCE, id)),
    );
  });

  it('asks about a record whose receive count is missing: it may have been delivered before', async () => {
    const lookup = vi.fn(async (_keys: string[]) => new Map<string, Set<string>>());
    const { ApproximateReceiveCount: _count, ...withoutCount } = eventRecord('x').attributes;
    const records = [
      eventRecord('first'),
      eventRecord('no-count', { attributes: withoutCount as SQSRecord['attributes'] }),
      { ...eventRecord('no-attributes'), attributes: undefined } as unknown as SQSRecord,
    ];
    await processBatch(records, options(tableDeliver(), { lookup }));
    expect(lookup.mock.calls[0]?.[0]).toEqual(['no-count', 'no-attributes'].map((id) => idempotencyKey(SOURCE, id)));
  });

  it('by default is not asked when every record is a first receive', async () => {
    const lookup = vi.fn(async () => new Map<string, Set<string>>());
    await processBatch([eventRecord('a'), eventRecord('b')], options(tableDeliver(), { lookup }));
    expect(lookup).not.toHaveBeenCalled();
  });

  it('is not asked when no record is valid', async () => {
    const lookup = vi.fn(async () => new Map<string, Set<string>>());
    await processBatch([sqsRecord(''), sqsRecord('[]')], options(tableDeliver(), { lookup }));
    expect(lookup).not.toHaveBeenCalled();
  });
});

describe('processBatch: FIFO groups', () => {
  it('delivers a group strictly in order, each record only after the previous one resolved', async () => {
    const fake = manualDeliver();
    const records = ['g1', 'g2', 'g3'].map((id) => eventRecord(id, { groupId: 'orders' }));
    const pending = processBatch(records, options(fake.deliver));
    await settle();
    expect(fake.ids()).toEqual(['g1']);
    fake.call('g1').resolve(allOk);
    await settle();
    expect(fake.ids()).toEqual(['g1', 'g2']);
    fake.call('g2').resolve(allOk);
    await settle();
    expect(fake.ids()).toEqual(['g1', 'g2', 'g3']);
    fake.call('g3').resolve(allOk);
    expect(kinds(await pending)).toEqual(['delivered', 'delivered', 'delivered']);
  });

  it('after a failure, the rest of the group is blocked and sent nowhere; other groups go on in parallel', async () => {
    const fake = manualDeliver();
    const records = [
      eventRecord('a1', { groupId: 'A' }),
      eventRecord('b1', { groupId: 'B' }),
      eventRecord('a2', { groupId: 'A' }),
      eventRecord('b2', { groupId: 'B' }),
      eventRecord('a3', { groupId: 'A' }),
    ];
    const pending = processBatch(records, options(fake.deliver));
    await settle();
    // The heads of both groups are in flight together.
    expect(fake.ids()).toEqual(['a1', 'b1']);
    fake.call('a1').resolve(transient);
    await settle();
    expect(fake.ids()).toEqual(['a1', 'b1']);
    fake.call('b1').resolve(allOk);
    await settle();
    expect(fake.ids()).toEqual(['a1', 'b1', 'b2']);
    fake.call('b2').resolve(allOk);
    const processed = await pending;
    expect(kinds(processed)).toEqual(['failed', 'delivered', 'blocked', 'delivered', 'blocked']);
    expect(processed[2]?.outcome).toEqual({ kind: 'blocked', groupId: 'A' });
    expect(fake.ids()).not.toContain('a2');
    expect(fake.ids()).not.toContain('a3');
  });

  it('one slow group does not hold up another', async () => {
    const fake = manualDeliver();
    const records = [
      eventRecord('slow', { groupId: 'S' }),
      eventRecord('f1', { groupId: 'F' }),
      eventRecord('f2', { groupId: 'F' }),
    ];
    const pending = processBatch(records, options(fake.deliver));
    await settle();
    fake.call('f1').resolve(allOk);
    await settle();
    fake.call('f2').resolve(allOk);
    await settle();
    expect(fake.ids()).toEqual(['slow', 'f1', 'f2']);
    fake.call('slow').resolve(allOk);
    expect(kinds(await pending)).toEqual(['delivered', 'delivered', 'delivered']);
  });

  it('without quarantine, an invalid or rejected record blocks the rest of its group', async () => {
    const invalidFirst = [
      sqsRecord('not json', { groupId: 'G' }),
      eventRecord('v1', { groupId: 'G' }),
      eventRecord('v2', { groupId: 'G' }),
    ];
    const deliver = tableDeliver();
    expect(kinds(await processBatch(invalidFirst, options(deliver)))).toEqual(['invalid', 'blocked', 'blocked']);
    expect(deliver).not.toHaveBeenCalled();

    const rejectedFirst = [eventRecord('r1', { groupId: 'G' }), eventRecord('v3', { groupId: 'G' })];
    const deliver2 = tableDeliver({ r1: rejected });
    expect(kinds(await processBatch(rejectedFirst, options(deliver2)))).toEqual(['rejected', 'blocked']);
    expect(deliver2).toHaveBeenCalledTimes(1);
  });

  it('with quarantine, invalid and rejected records do not block their group; transient failures still do', async () => {
    const records = [
      sqsRecord('not json', { groupId: 'G' }),
      eventRecord('v1', { groupId: 'G' }),
      eventRecord('r1', { groupId: 'G' }),
      eventRecord('v2', { groupId: 'G' }),
      eventRecord('t1', { groupId: 'G' }),
      eventRecord('v3', { groupId: 'G' }),
    ];
    const deliver = tableDeliver({ r1: rejected, t1: transient });
    const processed = await processBatch(records, options(deliver, { quarantineInOrder: async () => true }));
    expect(kinds(processed)).toEqual(['invalid', 'delivered', 'rejected', 'delivered', 'failed', 'blocked']);
    expect(deliver.mock.calls.map(([event]) => event.id)).toEqual(['v1', 'r1', 'v2', 't1']);
    expect(processed.map((p) => p.quarantined)).toEqual([true, undefined, true, undefined, undefined, undefined]);
  });

  it('a FIFO poison record holds its group until the quarantine confirms it; unconfirmed, the group is blocked (issue 9, defect 3)', async () => {
    const records = [
      eventRecord('a1', { groupId: 'A' }),
      sqsRecord('not json', { groupId: 'A' }),
      eventRecord('a3', { groupId: 'A' }),
      sqsRecord('not json either', { groupId: 'B' }),
      eventRecord('b2', { groupId: 'B' }),
    ];
    const deliver = tableDeliver();
    const asked: string[] = [];
    let confirmA!: (confirmed: boolean) => void;
    const quarantineInOrder = async (record: SQSRecord) => {
      asked.push(record.messageId);
      if (record.attributes.MessageGroupId === 'B') return true;
      return new Promise<boolean>((resolve) => {
        confirmA = resolve;
      });
    };
    const pending = processBatch(records, options(deliver, { quarantineInOrder }));
    await vi.waitFor(() => expect(asked).toHaveLength(2));
    // Group B went on past its confirmed poison; nothing later in group A went out while its quarantine was pending.
    expect(deliver.mock.calls.map(([event]) => event.id).sort()).toEqual(['a1', 'b2']);
    confirmA(false);
    const processed = await pending;
    expect(kinds(processed)).toEqual(['delivered', 'invalid', 'blocked', 'invalid', 'delivered']);
    expect(processed.map((p) => p.quarantined)).toEqual([undefined, false, undefined, true, undefined]);
    expect(deliver.mock.calls.map(([event]) => event.id).sort()).toEqual(['a1', 'b2']);
  });

  it('an event in two groups is delivered for each group only after its own predecessor (review finding 7)', async () => {
    const fake = manualDeliver();
    const records = [
      eventRecord('f', { groupId: 'G1' }),
      eventRecord('e', { groupId: 'G1' }),
      eventRecord('e', { groupId: 'G2' }),
    ];
    const pending = processBatch(records, options(fake.deliver));
    await settle();
    fake.calls[1]!.resolve(allOk);
    fake.call('f').resolve(allOk);
    await settle();
    // The second delivery of e starts only now, after f: the endpoint drops the copy by its Idempotency-Key.
    expect(fake.ids()).toEqual(['f', 'e', 'e']);
    fake.calls[2]!.resolve(allOk);
    expect(kinds(await pending)).toEqual(['delivered', 'delivered', 'delivered']);
  });

  it('a duplicate inside a group is delivered once and shares the outcome', async () => {
    const records = [
      eventRecord('d', { groupId: 'G' }),
      eventRecord('d', { groupId: 'G' }),
      eventRecord('e', { groupId: 'G' }),
    ];
    const deliver = tableDeliver();
    expect(kinds(await processBatch(records, options(deliver)))).toEqual(['delivered', 'delivered', 'delivered']);
    expect(deliver.mock.calls.map(([event]) => event.id)).toEqual(['d', 'e']);
  });
});

describe('outcomeOf', () => {
  it('delivered when every endpoint took the event, with the ledger skips', () => {
    expect(outcomeOf({ results: [ok('a'), ok('b')], skipped: ['c'] })).toEqual({
      kind: 'delivered',
      delivered: ['a', 'b'],
      skipped: ['c'],
    });
    expect(outcomeOf({ results: [], skipped: ['a', 'b'] })).toEqual({
      kind: 'delivered',
      delivered: [],
      skipped: ['a', 'b'],
    });
  });

  it('failed when some endpoint failed transiently, listing failures without the ok flag', () => {
    const outcome = outcomeOf({
      results: [ok('a'), fail('b', 'transient', { status: 503, attempts: 3 }), fail('c', 'aborted')],
      skipped: [],
    });
    expect(outcome).toEqual({
      kind: 'failed',
      delivered: ['a'],
      failures: [
        { endpoint: 'b', kind: 'transient', status: 503, attempts: 3 },
        { endpoint: 'c', kind: 'aborted', attempts: 1 },
      ],
    });
    expect(outcome).not.toHaveProperty('retryAfterS');
  });

  it('redirects, aborts and open circuits are failures worth retrying later, not rejections', () => {
    for (const kind of ['redirect', 'aborted', 'circuit-open'] as const) {
      expect(outcomeOf({ results: [fail('a', kind)], skipped: [] }).kind).toBe('failed');
    }
  });

  it('rejected wins over transient failures', () => {
    const outcome: RecordOutcome = outcomeOf({
      results: [fail('a', 'transient', { retryAfterS: 30 }), ok('b'), fail('c', 'rejected', { status: 422 })],
      skipped: [],
    });
    expect(outcome).toMatchObject({ kind: 'rejected', delivered: ['b'] });
    expect(outcome.kind === 'rejected' && outcome.failures.map((failure) => failure.endpoint)).toEqual(['a', 'c']);
  });

  it('retryAfterS is the longest any endpoint asked for', () => {
    expect(
      outcomeOf({
        results: [
          fail('a', 'transient', { retryAfterS: 5 }),
          fail('b', 'transient'),
          fail('c', 'transient', { retryAfterS: 120 }),
        ],
        skipped: [],
      }),
    ).toMatchObject({ kind: 'failed', retryAfterS: 120 });
  });
});
