import {
  type AttributeValue,
  BatchGetItemCommand,
  BatchWriteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedger, LedgerError, ledgerId } from '../../../lib/settle/ledger';
import { closedEndpoint, createLedgerTable, LOCAL_AWS, localDynamoDb } from '../../support/aws';

const dynamodb = localDynamoDb();
afterAll(() => dynamodb.destroy());

const endpoints = ['analytics', 'audit', 'search'];
const signal = () => AbortSignal.timeout(20_000);
const key = (i: number) => `${i}`.padStart(64, 'k');

describe.concurrent('createLedger on dynalite', () => {
  let table: string;
  beforeAll(async () => {
    table = await createLedgerTable(dynamodb);
  });

  it('remembers which endpoints took which event', async () => {
    const ledger = createLedger(dynamodb, { table, endpoints, ttlS: 3600 });
    const [k1, k2, k3] = ['evt-1', 'evt-2', 'evt-3'].map((id) => `${id}-${Math.random()}`);
    await ledger.record(
      [
        { key: k1!, endpoint: 'analytics' },
        { key: k1!, endpoint: 'audit' },
        { key: k2!, endpoint: 'search' },
        { key: k2!, endpoint: 'search' },
      ],
      signal(),
    );
    const delivered = await ledger.lookup([k1!, k2!, k3!, k1!], signal());
    expect(delivered).toEqual(
      new Map([
        [k1, new Set(['analytics', 'audit'])],
        [k2, new Set(['search'])],
      ]),
    );
  });

  it('asks only about the endpoints each event is routed to, when told', async () => {
    const ledger = createLedger(dynamodb, { table, endpoints, ttlS: 3600 });
    const k1 = `routed-${Math.random()}`;
    await ledger.record(
      [
        { key: k1, endpoint: 'analytics' },
        { key: k1, endpoint: 'audit' },
      ],
      signal(),
    );
    expect(await ledger.lookup([k1], signal(), () => ['audit', 'search'])).toEqual(new Map([[k1, new Set(['audit'])]]));
  });

  it("stores items in Powertools Idempotency's layout, expiring after DELIVERY_LEDGER_TTL_S", async () => {
    const now = 1_750_000_000_000;
    const ledger = createLedger(dynamodb, { table, endpoints, ttlS: 1_296_000, now: () => now });
    const k = `layout-${Math.random()}`;
    await ledger.record([{ key: k, endpoint: 'audit' }], signal());
    const { Item } = await dynamodb.send(
      new GetItemCommand({ TableName: table, Key: { id: { S: ledgerId(k, 'audit') } } }),
    );
    expect(Item).toEqual({
      id: { S: `${k}#audit` },
      expiration: { N: String(now / 1000 + 1_296_000) },
      status: { S: 'COMPLETED' },
    });
  });

  it('does not count expired items that DynamoDB has not deleted yet', async () => {
    const past = Date.now() - 2 * 3600_000;
    const k = `expired-${Math.random()}`;
    await createLedger(dynamodb, { table, endpoints, ttlS: 3600, now: () => past }).record(
      [{ key: k, endpoint: 'audit' }],
      signal(),
    );
    expect(await createLedger(dynamodb, { table, endpoints, ttlS: 3600 }).lookup([k], signal())).toEqual(new Map());
  });

  it('reads and writes a large batch in chunks (1,000 events × 3 endpoints)', async () => {
    const ledger = createLedger(dynamodb, { table, endpoints, ttlS: 3600 });
    const prefix = `${Math.random()}`;
    const keys = Array.from({ length: 1_000 }, (_, i) => `${prefix}-${key(i)}`);
    // Every even event reached analytics and audit; every third one also search.
    const entries = keys.flatMap((k, i) =>
      i % 2 === 0
        ? [
            { key: k, endpoint: 'analytics' },
            { key: k, endpoint: 'audit' },
            ...(i % 3 === 0 ? [{ key: k, endpoint: 'search' }] : []),
          ]
        : [],
    );
    await ledger.record(entries, signal());
    const delivered = await ledger.lookup(keys, signal());
    expect(delivered.size).toBe(500);
    keys.forEach((k, i) => {
      const expected = i % 2 === 0 ? new Set(['analytics', 'audit', ...(i % 3 === 0 ? ['search'] : [])]) : undefined;
      expect(delivered.get(k)).toEqual(expected);
    });
  });

  it('counts only COMPLETED items another writer left; one without expiration never expires', async () => {
    const k = `foreign-${Math.random()}`;
    const far = { N: String(Math.floor(Date.now() / 1000) + 3600) };
    const items: Record<string, AttributeValue>[] = [
      { id: { S: ledgerId(k, 'analytics') }, status: { S: 'COMPLETED' } },
      // Powertools Idempotency's record of a call still running: not a delivery.
      { id: { S: ledgerId(k, 'audit') }, status: { S: 'INPROGRESS' }, expiration: far },
      { id: { S: ledgerId(k, 'search') }, expiration: far },
    ];
    for (const Item of items) await dynamodb.send(new PutItemCommand({ TableName: table, Item }));
    expect(await createLedger(dynamodb, { table, endpoints, ttlS: 3600 }).lookup([k], signal())).toEqual(
      new Map([[k, new Set(['analytics'])]]),
    );
  });

  it('an item counts until its expiration second, not from it', async () => {
    const start = 1_750_000_000_000;
    const k = `boundary-${Math.random()}`;
    await createLedger(dynamodb, { table, endpoints, ttlS: 60, now: () => start }).record(
      [{ key: k, endpoint: 'audit' }],
      signal(),
    );
    const lookupAt = (now: number) =>
      createLedger(dynamodb, { table, endpoints, ttlS: 60, now: () => now }).lookup([k], signal());
    expect(await lookupAt(start + 59_999)).toEqual(new Map([[k, new Set(['audit'])]]));
    expect(await lookupAt(start + 60_000)).toEqual(new Map());
  });

  it('handles exact multiples of DynamoDB’s limits: 100 keys per read, 25 items per write', async () => {
    const ledger = createLedger(dynamodb, { table, endpoints: ['analytics', 'audit'], ttlS: 3600 });
    const keys = Array.from({ length: 50 }, (_, i) => `exact-${Math.random()}-${i}`);
    await ledger.record(
      keys.flatMap((k) => [
        { key: k, endpoint: 'analytics' },
        { key: k, endpoint: 'audit' },
      ]),
      signal(),
    );
    const delivered = await ledger.lookup(keys, signal());
    expect([...delivered.values()].filter((set) => set.size === 2)).toHaveLength(50);
  });

  it('reads and writes nothing once the deadline has passed', async () => {
    const ledger = createLedger(dynamodb, { table, endpoints, ttlS: 3600 });
    const k = `late-${Math.random()}`;
    await expect(ledger.record([{ key: k, endpoint: 'audit' }], AbortSignal.abort())).rejects.toBeInstanceOf(
      LedgerError,
    );
    await expect(ledger.lookup([k], AbortSignal.abort())).rejects.toBeInstanceOf(LedgerError);
    const { Item } = await dynamodb.send(
      new GetItemCommand({ TableName: table, Key: { id: { S: ledgerId(k, 'audit') } } }),
    );
    expect(Item).toBeUndefined();
  });

  it('throws a LedgerError saying what to check when the table does not exist', async () => {
    const ledger = createLedger(dynamodb, { table: 'no-such-ledger', endpoints, ttlS: 3600 });
    const error = await ledger.lookup(['k'], signal()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LedgerError);
    expect((error as LedgerError).operation).toBe('lookup');
    expect((error as LedgerError).message).toMatch(/DELIVERY_LEDGER_TABLE/);
    await expect(ledger.record([{ key: 'k', endpoint: 'audit' }], signal())).rejects.toBeInstanceOf(LedgerError);
  });

  it('throws a LedgerError with the cause when DynamoDB is unreachable', async () => {
    const down = localDynamoDb(await closedEndpoint());
    const ledger = createLedger(down, { table, endpoints, ttlS: 3600 });
    const lookup = await ledger.lookup(['k'], signal()).catch((e: unknown) => e);
    const record = await ledger.record([{ key: 'k', endpoint: 'audit' }], signal()).catch((e: unknown) => e);
    down.destroy();
    for (const error of [lookup, record]) {
      expect(error).toBeInstanceOf(LedgerError);
      expect(String((error as LedgerError).message)).toMatch(/ECONNREFUSED/);
      expect((error as LedgerError).name).toBe('LedgerError');
      expect((error as LedgerError).cause).toBeInstanceOf(Error);
      expect((error as LedgerError).message).toContain(
        "with a string partition key 'id', and that the function may dynamodb:BatchGetItem/BatchWriteItem on it",
      );
    }
    expect([(lookup as LedgerError).operation, (record as LedgerError).operation]).toEqual(['lookup', 'record']);
  });
});

// dynalite never throttles, so UnprocessedKeys/UnprocessedItems cannot be produced locally: these use a mock.
describe('createLedger retries what DynamoDB leaves unprocessed', () => {
  const client = new DynamoDBClient({ ...LOCAL_AWS, endpoint: 'http://127.0.0.1:9' });
  const mock = mockClient(client);
  afterAll(() => {
    mock.restore();
    client.destroy();
  });

  it('asks again for unprocessed keys and merges the answers', async () => {
    mock.reset();
    const table = 'ledger';
    const id = (endpoint: string) => ({ id: { S: ledgerId('k', endpoint) } });
    const item = (endpoint: string) => ({
      ...id(endpoint),
      status: { S: 'COMPLETED' },
      expiration: { N: '99999999999' },
    });
    mock
      .on(BatchGetItemCommand)
      .resolvesOnce({
        Responses: { [table]: [item('analytics')] },
        UnprocessedKeys: { [table]: { Keys: [id('audit')] } },
      })
      .resolvesOnce({ Responses: { [table]: [item('audit')] } });
    const ledger = createLedger(client, { table, endpoints: ['analytics', 'audit'], ttlS: 60 });
    expect(await ledger.lookup(['k'], signal())).toEqual(new Map([['k', new Set(['analytics', 'audit'])]]));
    expect(mock.commandCalls(BatchGetItemCommand)[1]!.args[0].input.RequestItems![table]!.Keys).toEqual([id('audit')]);
  });

  it('gives up with a LedgerError when writes stay unprocessed', async () => {
    mock.reset();
    const table = 'ledger';
    mock.on(BatchWriteItemCommand).callsFake((input: { RequestItems: Record<string, unknown[]> }) => ({
      UnprocessedItems: input.RequestItems,
    }));
    const ledger = createLedger(client, { table, endpoints: ['audit'], ttlS: 60 });
    const error = await ledger.record([{ key: 'k', endpoint: 'audit' }], signal()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LedgerError);
    expect((error as LedgerError).message).toMatch(
      /^delivery ledger record on table ledger failed: 1 item\(s\) still unprocessed after 6 retries; check /,
    );
    expect((error as LedgerError).cause).toBeUndefined();
    expect(mock.commandCalls(BatchWriteItemCommand)).toHaveLength(7);
  });

  it('gives up with a LedgerError when keys stay unprocessed', async () => {
    mock.reset();
    const table = 'ledger';
    mock.on(BatchGetItemCommand).callsFake((input: { RequestItems: Record<string, unknown> }) => ({
      Responses: { [table]: [] },
      UnprocessedKeys: input.RequestItems,
    }));
    const ledger = createLedger(client, { table, endpoints: ['audit', 'search'], ttlS: 60 });
    const error = await ledger.lookup(['k'], signal()).catch((e: unknown) => e);
    expect((error as LedgerError).operation).toBe('lookup');
    expect((error as LedgerError).message).toMatch(
      /^delivery ledger lookup on table ledger failed: 2 key\(s\) still unprocessed after 6 retries; check /,
    );
  });

  it('stops retrying when the deadline passes while DynamoDB leaves keys unprocessed', async () => {
    mock.reset();
    const table = 'ledger';
    const deadline = new AbortController();
    mock.on(BatchGetItemCommand).callsFake((input: { RequestItems: Record<string, unknown> }) => {
      deadline.abort(new Error('deadline'));
      return { Responses: { [table]: [] }, UnprocessedKeys: input.RequestItems };
    });
    const ledger = createLedger(client, { table, endpoints: ['audit'], ttlS: 60 });
    const error = await ledger.lookup(['k'], deadline.signal).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LedgerError);
    expect((error as LedgerError).message).toMatch(/Error: deadline/);
    expect(mock.commandCalls(BatchGetItemCommand)).toHaveLength(1);
  });
});
