import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { outcomeOf, type ProcessedRecord } from '../../../lib/batch/batch';
import { parseEvent, type ValidEvent } from '../../../lib/event/event';
import { createBackoff } from '../../../lib/settle/backoff';
import { createLedger, ledgerId } from '../../../lib/settle/ledger';
import { createQuarantine, QUARANTINE_ATTRIBUTES as Q } from '../../../lib/settle/quarantine';
import {
  createSettle,
  GROUPED_IDS_PER_LINE,
  quarantineInOrder,
  type SettleCounters,
  type SettleDeps,
} from '../../../lib/settle/settle';
import type {
  Backoff,
  BackoffItem,
  DeliveryFailure,
  Ledger,
  LedgerEntry,
  Quarantine,
  RecordOutcome,
} from '../../../lib/types';
import {
  closedEndpoint,
  createLedgerTable,
  createQueue,
  type LocalQueue,
  localDynamoDb,
  localSqs,
  pollUntil,
  receiveAll,
  receiveAsRecords,
} from '../../support/aws';
import { cloudEvent, sqsRecord } from '../../support/events';
import { captureLogs, type LogLine } from '../../support/logs';

// The side effects are the real SQS and DynamoDB implementations against local-aws-sqs and dynalite; the outcomes are
// written by hand, as lib/batch/batch.ts hands them over (its own tests cover how they are reached).
// The ordering tests alone use in-memory fakes of our own side-effect interfaces (see heldEffects).

const sqs = localSqs();
const dynamodb = localDynamoDb();
afterAll(() => {
  sqs.destroy();
  dynamodb.destroy();
});

const signal = () => AbortSignal.timeout(15_000);
const counters = (): SettleCounters => ({ ledgerErrors: 0, quarantineErrors: 0, backoffErrors: 0 });
const event = (record: SQSRecord) => parseEvent(record.body, 256 * 1024);
const processed = (record: SQSRecord, outcome: RecordOutcome, quarantined?: boolean): ProcessedRecord => ({
  record,
  event: event(record),
  outcome,
  ...(quarantined !== undefined ? { quarantined } : {}),
});
const ok = (endpoint: string) => ({ ok: true as const, endpoint, attempts: 1, latencyMs: 1, status: 200 });
const fail = (endpoint: string, kind: DeliveryFailure['kind']) => ({ ok: false as const, endpoint, kind, attempts: 1 });
const failure = (endpoint: string, kind: DeliveryFailure['kind'], extra: Partial<DeliveryFailure> = {}) => ({
  endpoint,
  kind,
  attempts: 1,
  ...extra,
});
const body = (id: string) => JSON.stringify(cloudEvent(id));
// Jitter at its low end: every backed-off record is hidden for exactly 1 s.
const oneSecondBackoff = () => createBackoff(sqs, { baseDelayS: 1, maxDelayS: 1, random: () => 0 });

/** A log line as on-call reads it: which record, how loud, what, and the fields that say why and where. */
function logged(line: LogLine): [unknown, string, string, Record<string, unknown>] {
  const fields: Record<string, unknown> = {};
  for (const name of ['reason', 'endpoint', 'status', 'routedTo', 'hint', 'groupId']) {
    if (line[name] !== undefined) fields[name] = line[name];
  }
  return [line.messageId, line.level, line.message, fields];
}

/** A promise the test opens by hand: a fake side effect waits on it while the test looks at what settle did. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/** Lets every promise chain of the in-memory fakes run (no I/O is involved, so one macrotask turn is enough). */
const drain = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * In-memory fakes of our own Quarantine, Backoff and Ledger interfaces (not of AWS): only they can hold a side effect
 * open while the test looks at what settle already did; local SQS and dynalite answer before a test could look.
 * Each call is recorded with the message ids (or ledger entries) it received and how many log lines existed then.
 */
function heldEffects(lines: LogLine[], quarantined: (ids: string[]) => string[]) {
  const calls: { effect: string; ids: string[]; linesBefore: number }[] = [];
  const held = { quarantine: gate(), ledger: gate(), backoff: gate() };
  const quarantine: Quarantine = {
    async send(items) {
      const ids = items.map((item) => item.record.messageId);
      calls.push({ effect: 'quarantine', ids, linesBefore: lines.length });
      await held.quarantine.opened;
      return new Set(quarantined(ids));
    },
  };
  const backoff: Backoff = {
    async apply(items) {
      calls.push({ effect: 'backoff', ids: items.map((item) => item.record.messageId), linesBefore: lines.length });
      await held.backoff.opened;
    },
  };
  const ledger: Ledger = {
    lookup: async () => new Map(),
    async record(entries) {
      calls.push({ effect: 'ledger', ids: entries.map((e) => `${e.key} ${e.endpoint}`), linesBefore: lines.length });
      await held.ledger.opened;
    },
  };
  // A test that fails while a side effect is held must not leave settle pending.
  onTestFinished(() => {
    for (const g of Object.values(held)) g.open();
  });
  return { calls, held, quarantine, backoff, ledger };
}

/** The backoff and the ledger both started before settle wrote any log line (and nothing else was called). */
function expectStartedBeforeAnyLine(calls: ReturnType<typeof heldEffects>['calls']) {
  expect(calls.map((call) => [call.effect, call.linesBefore]).sort()).toEqual([
    ['backoff', 0],
    ['ledger', 0],
  ]);
}

let table: string;
beforeAll(async () => {
  table = await createLedgerTable(dynamodb, 'settle');
});

/** The message bodies that become visible again on `queue`, until `count` came back (the rest stay hidden). */
async function returned(queue: LocalQueue, count: number): Promise<string[]> {
  const seen: string[] = [];
  await pollUntil(
    `${count} message(s) visible again on ${queue.name}`,
    async () => {
      const response = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10, VisibilityTimeout: 600 }),
      );
      seen.push(...(response.Messages ?? []).map((message) => message.Body!));
      return seen.length >= count ? true : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  return seen;
}

describe('createSettle with local SQS and dynalite', () => {
  it('acknowledges delivered and quarantined records, backs off the rest and records what comes back', async () => {
    const [source, quarantineQueue] = await Promise.all([createQueue(sqs, 'settle'), createQueue(sqs, 'settle-q')]);
    // Received for 600 s: only the records the backoff touches (1 s) come back, however slow the setup is.
    const [delivered, invalid, rejected, failed, blocked] = await receiveAsRecords(
      sqs,
      source,
      [
        { body: body('delivered') },
        { body: '{not json' },
        { body: body('rejected') },
        { body: body('failed') },
        { body: body('blocked') },
      ],
      600,
    );
    const ledger = createLedger(dynamodb, { table, endpoints: ['alpha', 'beta'], ttlS: 3600 });
    const { logger, lines } = captureLogs();
    const settle = createSettle({
      logger,
      ledgerMode: 'redeliveries',
      quarantine: createQuarantine(sqs, quarantineQueue.url),
      backoff: oneSecondBackoff(),
      ledger,
    });
    const count = counters();
    const batch = [
      processed(delivered!, { kind: 'delivered', delivered: ['alpha', 'beta'], skipped: [] }),
      processed(invalid!, { kind: 'invalid', reason: 'not-json', detail: 'bad' }),
      processed(rejected!, {
        kind: 'rejected',
        // The quarantine names the endpoint that rejected it, not the first failure.
        failures: [failure('alpha', 'transient', { status: 503 }), failure('beta', 'rejected', { status: 422 })],
        delivered: [],
      }),
      processed(failed!, {
        kind: 'failed',
        failures: [failure('beta', 'transient', { status: 503, retryAfterS: 5 })],
        delivered: ['alpha'],
        retryAfterS: 5,
      }),
      processed(blocked!, { kind: 'blocked', groupId: 'g' }),
    ];

    const reported = await settle(batch, signal(), count);

    expect([...reported]).toEqual([failed!.messageId, blocked!.messageId]);
    expect(count).toEqual({ ledgerErrors: 0, quarantineErrors: 0, backoffErrors: 0 });
    const poison = await receiveAll(sqs, quarantineQueue.url);
    expect(
      poison.map((m) => [
        m.Body,
        m.MessageAttributes?.[Q.reason]?.StringValue,
        m.MessageAttributes?.[Q.detail]?.StringValue,
      ]),
    ).toEqual(
      expect.arrayContaining([
        ['{not json', 'not-json', 'bad'],
        [rejected!.body, 'rejected-by-endpoint', 'beta answered 422'],
      ]),
    );
    expect(poison).toHaveLength(2);
    // The backed-off two come back after 1 s; the acknowledged three stay hidden for their 600 s.
    expect((await returned(source, 2)).sort()).toEqual([failed!.body, blocked!.body].sort());
    expect(await receiveAll(sqs, source.url)).toEqual([]);
    // Only the record that comes back is in the ledger (the default mode): alpha has it.
    const keys = batch.map((item) => (item.event as ValidEvent).key).filter(Boolean);
    expect(await ledger.lookup(keys, signal())).toEqual(
      new Map([[(batch[3]!.event as ValidEvent).key, new Set(['alpha'])]]),
    );
    expect(lines.map(logged)).toEqual([
      [invalid!.messageId, 'WARN', 'invalid record', { reason: 'not-json' }],
      [rejected!.messageId, 'WARN', 'delivery failed', { endpoint: 'alpha', status: 503, routedTo: 'alpha,beta' }],
      [rejected!.messageId, 'WARN', 'delivery failed', { endpoint: 'beta', status: 422, routedTo: 'alpha,beta' }],
      [failed!.messageId, 'WARN', 'delivery failed', { endpoint: 'beta', status: 503, routedTo: 'alpha,beta' }],
      [blocked!.messageId, 'WARN', 'record not sent: an earlier record of its FIFO group failed', { groupId: 'g' }],
      [invalid!.messageId, 'INFO', 'record quarantined', { reason: 'not-json' }],
      [
        rejected!.messageId,
        'INFO',
        'record quarantined',
        { reason: 'rejected-by-endpoint', endpoint: 'beta', status: 422 },
      ],
    ]);
  });

  it('backs off poison the quarantine did not take, like the failed records', async () => {
    const source = await createQueue(sqs, 'settle-poison');
    const [poison, failed] = await receiveAsRecords(sqs, source, [{ body: '[]' }, { body: body('poison') }], 600);
    const { logger, lines } = captureLogs();
    const settle = createSettle({
      logger,
      ledgerMode: 'redeliveries',
      // The local SQS answers, but this queue does not exist: every quarantine send fails.
      quarantine: createQuarantine(sqs, `${source.url}-missing`),
      backoff: oneSecondBackoff(),
    });
    const count = counters();

    const reported = await settle(
      [
        processed(poison!, { kind: 'invalid', reason: 'not-object', detail: 'an array' }),
        processed(failed!, { kind: 'failed', failures: [failure('beta', 'transient')], delivered: [] }),
      ],
      signal(),
      count,
    );

    expect([...reported]).toEqual([poison!.messageId, failed!.messageId]);
    expect(count).toEqual({ ledgerErrors: 0, quarantineErrors: 1, backoffErrors: 0 });
    // Received for 600 s: both come back after 1 s only if the backoff changed their visibility.
    expect((await returned(source, 2)).sort()).toEqual([poison!.body, failed!.body].sort());
    expect(lines.filter((line) => line.messageId === poison!.messageId).map(logged)).toEqual([
      [poison!.messageId, 'WARN', 'invalid record', { reason: 'not-object' }],
      [
        poison!.messageId,
        'WARN',
        'record not quarantined; reported failed, it comes back later',
        { reason: 'not-object' },
      ],
    ]);
  });

  it('trusts what the FIFO path already quarantined, and reports what it could not', async () => {
    const quarantineQueue = await createQueue(sqs, 'settle-fifo-q');
    const [safe, refused] = [sqsRecord('x'), sqsRecord('y')];
    const { logger, lines } = captureLogs();
    const settle = createSettle({
      logger,
      ledgerMode: 'redeliveries',
      quarantine: createQuarantine(sqs, quarantineQueue.url),
    });
    const count = counters();
    const invalid: RecordOutcome = { kind: 'invalid', reason: 'not-json', detail: 'bad' };

    const reported = await settle(
      [processed(safe, invalid, true), processed(refused, invalid, false)],
      signal(),
      count,
    );

    expect([...reported]).toEqual([refused.messageId]);
    expect(count.quarantineErrors).toBe(1);
    expect(await receiveAll(sqs, quarantineQueue.url)).toEqual([]);
    expect(lines.filter((line) => line.messageId === refused.messageId).map((line) => line.message)).toContain(
      'record not quarantined; reported failed, it comes back later',
    );
    expect(lines.filter((line) => line.messageId === safe.messageId).map(logged)).toEqual([
      [safe.messageId, 'WARN', 'invalid record', { reason: 'not-json' }],
      [safe.messageId, 'INFO', 'record quarantined', { reason: 'not-json' }],
    ]);
  });

  it('reports poison failed and counts each side effect that cannot reach its service', async () => {
    const source = await createQueue(sqs, 'settle-down');
    const [poison, failed, blocked] = await receiveAsRecords(sqs, source, [
      { body: '[]' },
      { body: body('down') },
      { body: body('down-blocked') },
    ]);
    const down = await closedEndpoint();
    const [sqsDown, dynamoDown] = [localSqs(down), localDynamoDb(down)];
    onTestFinished(() => {
      sqsDown.destroy();
      dynamoDown.destroy();
    });
    const { logger, lines } = captureLogs();
    const deps: SettleDeps = {
      logger,
      ledgerMode: 'redeliveries',
      quarantine: createQuarantine(sqsDown, `${down}/123456789012/nowhere`),
      backoff: createBackoff(sqsDown, { baseDelayS: 1, maxDelayS: 1 }),
      ledger: createLedger(dynamoDown, { table, endpoints: ['alpha', 'beta'], ttlS: 3600 }),
    };
    const count = counters();

    const reported = await createSettle(deps)(
      [
        processed(poison!, { kind: 'invalid', reason: 'not-object', detail: 'an array' }),
        processed(failed!, { kind: 'failed', failures: [failure('beta', 'transient')], delivered: ['alpha'] }),
        processed(blocked!, { kind: 'blocked', groupId: 'g' }),
      ],
      signal(),
      count,
    );

    expect([...reported]).toEqual([poison!.messageId, failed!.messageId, blocked!.messageId]);
    expect(count).toEqual({ ledgerErrors: 1, quarantineErrors: 1, backoffErrors: 1 });
    // Each line says why (the SDK's error) and the ledger line how much is lost: alpha's one entry, nothing blocked.
    const error = expect.stringMatching(/\w/);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ message: 'quarantine failed; the records stay on the queue', error }),
        expect.objectContaining({
          message: 'delivery ledger not updated; a redelivery will reach these endpoints again',
          error,
          entries: 1,
        }),
        expect.objectContaining({
          message: 'visibility backoff failed; the records come back after the queue visibility timeout',
          error,
        }),
      ]),
    );

    // The FIFO path's own send: the record and the rest of its group stay, and the line says which record.
    lines.length = 0;
    const inOrder = quarantineInOrder(logger, deps.quarantine!, signal());
    expect(await inOrder(poison!, { kind: 'invalid', reason: 'not-object', detail: 'an array' })).toBe(false);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'ERROR',
        message: 'quarantine failed; the record and the rest of its FIFO group stay on the queue',
        messageId: poison!.messageId,
        error,
      }),
    ]);
  });

  it('without a quarantine, reports poison failed without calling it a quarantine error', async () => {
    const { logger, lines } = captureLogs();
    const record = sqsRecord('x');
    const count = counters();
    const reported = await createSettle({ logger, ledgerMode: 'redeliveries' })(
      [processed(record, { kind: 'invalid', reason: 'not-json', detail: 'bad' })],
      signal(),
      count,
    );
    expect([...reported]).toEqual([record.messageId]);
    expect(count.quarantineErrors).toBe(0);
    expect(lines.map((line) => line.message)).toEqual(['invalid record']);
  });

  it('in every-delivery mode records delivered and skipped endpoints of delivered events, once per event', async () => {
    const real = createLedger(dynamodb, { table, endpoints: ['alpha', 'beta'], ttlS: 3600 });
    // The real ledger folds duplicate entries into one write: only a recording wrapper sees what settle asked for.
    const asked: LedgerEntry[] = [];
    const ledger: Ledger = {
      lookup: (keys, s) => real.lookup(keys, s),
      record: (entries, s) => {
        asked.push(...entries);
        return real.record(entries, s);
      },
    };
    const { logger } = captureLogs();
    const id = `every-${Math.random()}`;
    const [first, duplicate] = [sqsRecord(body(id)), sqsRecord(body(id))];
    const outcome: RecordOutcome = { kind: 'delivered', delivered: ['alpha'], skipped: ['beta'] };
    const batch = [processed(first, outcome), processed(duplicate, outcome)];
    const count = counters();
    const reported = await createSettle({ logger, ledgerMode: 'every-delivery', ledger })(batch, signal(), count);
    expect(reported.size).toBe(0);
    expect(count.ledgerErrors).toBe(0);
    const key = (batch[0]!.event as ValidEvent).key;
    expect(asked).toEqual([
      { key, endpoint: 'alpha' },
      { key, endpoint: 'beta' },
    ]);
    expect(await real.lookup([key], signal())).toEqual(new Map([[key, new Set(['alpha', 'beta'])]]));
  });

  // Review of issue 15 A5: entries were written once per event key, so the second record of an event routed
  // differently lost its own.
  it('issue 15 A5: records of one event routed differently each write the endpoints they reached', async () => {
    const ledger = createLedger(dynamodb, { table, endpoints: ['alpha', 'beta', 'gamma'], ttlS: 3600 });
    const settle = createSettle({ logger: captureLogs().logger, ledgerMode: 'redeliveries', ledger });
    const id = `routed-${Math.random()}`;
    const [toAlpha, toBeta] = [sqsRecord(body(id)), sqsRecord(body(id))];
    // Filters routed one record to alpha + gamma, the other to beta + gamma; gamma failed for both: both come back.
    const failed = (delivered: string): RecordOutcome => ({
      kind: 'failed',
      failures: [failure('gamma', 'transient')],
      delivered: [delivered],
    });
    const batch = [processed(toAlpha, failed('alpha')), processed(toBeta, failed('beta'))];
    await settle(batch, signal(), counters());
    const key = (batch[0]!.event as ValidEvent).key;
    // Without beta's entry the returning record is sent to beta again.
    expect(await ledger.lookup([key], signal())).toEqual(new Map([[key, new Set(['alpha', 'beta'])]]));
  });

  it('issue 15 A3: a returning event that fails again writes the entries of the endpoints it skipped again', async () => {
    const day = 86_400_000;
    let now = Date.now();
    const ledger = createLedger(dynamodb, {
      table,
      endpoints: ['alpha', 'beta', 'gamma'],
      ttlS: 19 * 86_400,
      now: () => now,
    });
    const settle = createSettle({ logger: captureLogs().logger, ledgerMode: 'redeliveries', ledger });
    const record = sqsRecord(body(`skipped-${Math.random()}`));
    const key = (event(record) as ValidEvent).key;
    const expirationOf = async (endpoint: string) => {
      const { Item } = await dynamodb.send(
        new GetItemCommand({ TableName: table, Key: { id: { S: ledgerId(key, endpoint) } }, ConsistentRead: true }),
      );
      return Number(Item?.expiration?.N);
    };
    // First receive: alpha takes it, beta fails.
    const first = outcomeOf({ results: [ok('alpha'), fail('beta', 'transient')], skipped: [] });
    expect(await settle([processed(record, first)], signal(), counters())).toEqual(new Set([record.messageId]));
    const firstExpiration = await expirationOf('alpha');
    // A day later SQS hands the same message out again: the ledger says alpha has it; beta fails again. Within one
    // message's life alpha's first entry outlasts it: not written again on every receive (review of issue 15 A3).
    now += day;
    const redelivered = outcomeOf({ results: [fail('beta', 'transient')], skipped: ['alpha'] });
    await settle([processed(record, redelivered)], signal(), counters());
    expect(await expirationOf('alpha')).toBe(firstExpiration);
    // Nine days later a redrive moves it back (a new message carrying the redrive marker): gamma takes it, beta fails.
    now += 9 * day;
    const redriven: SQSRecord = {
      ...record,
      messageAttributes: { 'redrive.from': { dataType: 'String', stringValue: 'arn:aws:sqs:us-east-1:1:dlq' } },
    };
    const again = outcomeOf({ results: [ok('gamma'), fail('beta', 'transient')], skipped: ['alpha'] });
    await settle([processed(redriven, again)], signal(), counters());
    // alpha's entry lasts as long as the event's new life, not 19 days from the first failure.
    expect(await expirationOf('alpha')).toBe(firstExpiration + 10 * 86_400);
    expect(await expirationOf('gamma')).toBe(firstExpiration + 10 * 86_400);
  });

  it('groups deliveries cut off by the deadline into one line per endpoint, every id listed', async () => {
    const { logger, lines } = captureLogs();
    const records = Array.from({ length: GROUPED_IDS_PER_LINE + 1 }, () => sqsRecord(body(`cut-${Math.random()}`)));
    const batch = records.map((record) =>
      processed(record, { kind: 'failed', failures: [failure('beta', 'aborted')], delivered: [] }),
    );
    const reported = await createSettle({ logger, ledgerMode: 'redeliveries' })(batch, signal(), counters());
    expect(reported.size).toBe(records.length);
    const grouped = lines.filter((line) => line.message === 'deliveries cut off by the deadline');
    expect(grouped.map((line) => [line.endpoint, line.records])).toEqual([
      ['beta', records.length],
      ['beta', records.length],
    ]);
    expect(grouped.flatMap((line) => String(line.messageIds).split(','))).toEqual(records.map((r) => r.messageId));
    expect(lines.filter((line) => line.message === 'delivery failed')).toEqual([]);
  });
  it('writes the failure lines and the ledger while the quarantine is out, and backs off what it did not take', async () => {
    const { logger, lines } = captureLogs();
    const [poison, taken, failed] = [sqsRecord('[]'), sqsRecord('{'), sqsRecord(body(`held-${Math.random()}`))];
    // The quarantine takes `taken` only: `poison` must join the backoff.
    const fx = heldEffects(lines, (ids) => ids.filter((id) => id === taken.messageId));
    const settle = createSettle({ logger, ledgerMode: 'redeliveries', ...fx });
    const invalid: RecordOutcome = { kind: 'invalid', reason: 'not-json', detail: 'bad' };
    const batch = [
      processed(poison, invalid),
      processed(taken, invalid),
      processed(failed, {
        kind: 'failed',
        failures: [failure('beta', 'transient', { status: 503 })],
        delivered: ['alpha'],
      }),
    ];

    const settling = settle(batch, signal(), counters());
    await drain();

    // Quarantine and ledger both out, every failure line already written; the backoff waits for the quarantine.
    expect(fx.calls.map((call) => call.effect).sort()).toEqual(['ledger', 'quarantine']);
    expect(lines.map((line) => [line.messageId, line.message])).toEqual([
      [poison.messageId, 'invalid record'],
      [taken.messageId, 'invalid record'],
      [failed.messageId, 'delivery failed'],
    ]);
    fx.held.quarantine.open();
    await drain();
    // The backoff starts while the ledger is still out.
    expect(fx.calls.filter((call) => call.effect === 'backoff').map((call) => call.ids.sort())).toEqual([
      [poison.messageId, failed.messageId].sort(),
    ]);
    fx.held.ledger.open();
    fx.held.backoff.open();
    expect([...(await settling)]).toEqual([poison.messageId, failed.messageId]);
  });

  it('with no quarantine, starts the backoff and the ledger before writing any log line', async () => {
    const { logger, lines } = captureLogs();
    const [poison, failed] = [sqsRecord('[]'), sqsRecord(body(`early-${Math.random()}`))];
    const { quarantine: _, ...fx } = heldEffects(lines, () => []);
    const settle = createSettle({ logger, ledgerMode: 'redeliveries', ...fx });
    const settling = settle(
      [
        processed(poison, { kind: 'invalid', reason: 'not-json', detail: 'bad' }),
        processed(failed, { kind: 'failed', failures: [failure('beta', 'transient')], delivered: ['alpha'] }),
      ],
      signal(),
      counters(),
    );
    await drain();
    expectStartedBeforeAnyLine(fx.calls);
    expect(lines).toHaveLength(2);
    fx.held.ledger.open();
    fx.held.backoff.open();
    expect([...(await settling)]).toEqual([poison.messageId, failed.messageId]);
  });

  it('tells on-call what to check when credentials are refused, and where the event is routed', async () => {
    const { logger, lines } = captureLogs();
    const [none, refused] = [sqsRecord(body('none')), sqsRecord(body('refused'))];
    const reported = await createSettle({ logger, ledgerMode: 'redeliveries' })(
      [
        processed(none, {
          kind: 'failed',
          failures: [failure('beta', 'unauthorized', { status: 401, error: 'CREDENTIALS_NONE' })],
          delivered: ['alpha'],
        }),
        processed(refused, {
          kind: 'failed',
          failures: [
            failure('beta', 'unauthorized', { status: 403 }),
            failure('gamma', 'endpoint-error', { status: 404 }),
          ],
          delivered: [],
        }),
      ],
      signal(),
      counters(),
    );
    expect([...reported]).toEqual([none.messageId, refused.messageId]);
    expect(lines.map(logged)).toEqual([
      [
        none.messageId,
        'WARN',
        'delivery failed',
        {
          endpoint: 'beta',
          status: 401,
          routedTo: 'alpha,beta',
          hint: expect.stringContaining('the endpoint has none: add its entry to ENDPOINT_CREDENTIALS'),
        },
      ],
      [
        refused.messageId,
        'WARN',
        'delivery failed',
        {
          endpoint: 'beta',
          status: 403,
          routedTo: 'beta,gamma',
          hint: expect.stringContaining(
            "even after reading them again: check the endpoint's entry in ENDPOINT_CREDENTIALS",
          ),
        },
      ],
      [refused.messageId, 'WARN', 'delivery failed', { endpoint: 'gamma', status: 404, routedTo: 'beta,gamma' }],
    ]);
  });

  it('acknowledges events routed to no endpoint with one line per batch naming their kinds', async () => {
    const { logger, lines } = captureLogs();
    const kind = (type: string, source: string) =>
      sqsRecord(JSON.stringify(cloudEvent(`${type}-${Math.random()}`, { type, source })));
    const records = [kind('a.created', 'urn:one'), kind('a.created', 'urn:one'), kind('b.deleted', 'urn:two')];
    const unrouted: RecordOutcome = { kind: 'delivered', delivered: [], skipped: [] };
    const batch = [
      ...records.map((record) => processed(record, unrouted)),
      processed(sqsRecord(body('routed')), {
        kind: 'delivered',
        delivered: ['alpha'],
        skipped: [],
      }),
      // A redelivery every endpoint already had: routed, not unrouted.
      processed(sqsRecord(body('had')), { kind: 'delivered', delivered: [], skipped: ['alpha'] }),
    ];
    const reported = await createSettle({ logger, ledgerMode: 'redeliveries' })(batch, signal(), counters());
    expect(reported.size).toBe(0);
    expect(
      lines.map(({ level, message, records, kinds, eventIds }) => ({ level, message, records, kinds, eventIds })),
    ).toEqual([
      {
        level: 'INFO',
        message: 'records routed to no endpoint; acknowledged',
        records: 3,
        kinds: [
          { type: 'a.created', source: 'urn:one', records: 2 },
          { type: 'b.deleted', source: 'urn:two', records: 1 },
        ],
        eventIds: records.map((record) => (event(record) as ValidEvent).id),
      },
    ]);
  });

  it('lists at most 20 kinds and 20 event ids in the unrouted line, and counts every record', async () => {
    const { logger, lines } = captureLogs();
    const records = Array.from({ length: 21 }, (_, i) =>
      sqsRecord(JSON.stringify(cloudEvent(`many-${i}`, { type: `k${i}.created`, source: 'urn:many' }))),
    );
    const unrouted: RecordOutcome = { kind: 'delivered', delivered: [], skipped: [] };
    await createSettle({ logger, ledgerMode: 'redeliveries' })(
      records.map((record) => processed(record, unrouted)),
      signal(),
      counters(),
    );
    expect(lines).toHaveLength(1);
    expect(lines[0]!.records).toBe(21);
    expect((lines[0]!.kinds as unknown[]).length).toBe(20);
    expect(lines[0]!.eventIds).toEqual(records.slice(0, 20).map((_, i) => `many-${i}`));
  });

  it('writes exactly one grouped line for exactly GROUPED_IDS_PER_LINE records', async () => {
    const { logger, lines } = captureLogs();
    const records = Array.from({ length: GROUPED_IDS_PER_LINE }, () => sqsRecord(body(`open-${Math.random()}`)));
    const batch = records.map((record) =>
      processed(record, { kind: 'failed', failures: [failure('beta', 'circuit-open')], delivered: [] }),
    );
    await createSettle({ logger, ledgerMode: 'redeliveries' })(batch, signal(), counters());
    expect(
      lines.map((line) => [line.message, line.kind, line.records, String(line.messageIds).split(',').length]),
    ).toEqual([
      [
        "deliveries not attempted: the endpoint's circuit breaker is open",
        'circuit-open',
        records.length,
        records.length,
      ],
    ]);
  });

  it('with a quarantine but no poison, backs off at once with the Retry-After, and leaves idle side effects alone', async () => {
    const { logger, lines } = captureLogs();
    const failed = sqsRecord(body(`retry-${Math.random()}`));
    const fx = heldEffects(lines, () => []);
    // Local SQS does not report the visibility timeout it stores: only our own Backoff interface shows the delay asked.
    const asked: BackoffItem[] = [];
    const backoff: Backoff = {
      apply: (items, s) => {
        asked.push(...items);
        return fx.backoff.apply(items, s);
      },
    };
    const settle = createSettle({ logger, ledgerMode: 'redeliveries', ...fx, backoff });
    const settling = settle(
      [
        processed(failed, {
          kind: 'failed',
          failures: [failure('beta', 'transient', { status: 503, retryAfterS: 30 })],
          delivered: ['alpha'],
          retryAfterS: 30,
        }),
        processed(sqsRecord(body(`fine-${Math.random()}`)), { kind: 'delivered', delivered: ['alpha'], skipped: [] }),
      ],
      signal(),
      counters(),
    );
    await drain();
    expectStartedBeforeAnyLine(fx.calls);
    expect(asked).toEqual([{ record: failed, retryAfterS: 30 }]);
    fx.held.ledger.open();
    fx.held.backoff.open();
    expect([...(await settling)]).toEqual([failed.messageId]);

    // All delivered, nothing comes back: no quarantine, backoff or ledger call at all.
    fx.calls.length = 0;
    fx.held.quarantine.open();
    const all = await settle(
      [processed(sqsRecord(body(`all-${Math.random()}`)), { kind: 'delivered', delivered: ['alpha'], skipped: [] })],
      signal(),
      counters(),
    );
    expect(all.size).toBe(0);
    expect(fx.calls).toEqual([]);
  });

  it('tells on-call, for each thing that happened to a refused credential, what to check', async () => {
    const { logger, lines } = captureLogs();
    const codes = [
      'CREDENTIALS_NONE',
      'CREDENTIALS_NOT_REFRESHED',
      'CREDENTIALS_REFRESH_FAILED: Throttling',
      'CREDENTIALS_REFUSED',
      'OAUTH_TOKEN_REFUSED: OAuth token endpoint https://login.example.com/token answered 400 invalid_client',
      'INVALID_HEADER_VALUE x-api-key',
      'SIGNING_SECRET_INVALID signing.secrets[0] (ssm:/sig)',
    ];
    const records = codes.map((code) => sqsRecord(body(`hint-${code}`)));
    await createSettle({ logger, ledgerMode: 'redeliveries' })(
      records.map((record, i) =>
        processed(record, {
          kind: 'failed',
          failures: [failure('beta', 'unauthorized', { status: 401, error: codes[i]! })],
          delivered: [],
        }),
      ),
      signal(),
      counters(),
    );
    const check =
      "check the endpoint's entry in ENDPOINT_CREDENTIALS (or its auth/signing in the endpoints file) and the value " +
      'stored for it; the record comes back with backoff';
    expect(lines.map((line) => line.hint)).toEqual([
      'credentials were refused (401/403) and the endpoint has none: add its entry to ENDPOINT_CREDENTIALS, or auth ' +
        'to its entry in the endpoints file',
      `credentials were refused (401/403); read again less than 30 s ago, the store holds the refused value: ${check}`,
      `credentials were refused (401/403) and reading them again failed (see error): ${check}`,
      `credentials were refused (401/403) even after reading them again: ${check}`,
      'the OAuth token endpoint refused the client (its status and error code are in error; nothing was sent to the ' +
        "endpoint): check the endpoint's auth.clientId, auth.scope, the client secret stored for auth.clientSecret and " +
        'auth.clientAuth (a token endpoint that takes the secret only in the form refuses HTTP Basic: set post); ' +
        'the record comes back with backoff',
      'a stored secret holds a character HTTP cannot carry (a line break? see error for the header); nothing was sent: ' +
        "fix the value stored for the endpoint's auth/signing in the endpoints file or its ENDPOINT_CREDENTIALS entry; " +
        'the record comes back with backoff',
      "the stored Standard Webhooks secret named in error is not 'whsec_' + base64 of 24 to 64 random bytes; nothing " +
        'was sent: store a valid secret under that name (or remove it from signing.secrets); the record comes back with backoff',
    ]);
    // Each line carries the event's identity, so "where is event X" finds it.
    expect(lines.map((line) => [line.eventId, line.eventSource, line.eventType])).toEqual(
      codes.map((code) => [`hint-${code}`, 'urn:test:orders', 'com.example.order.created']),
    );
  });
});
