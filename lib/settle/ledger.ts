import {
  type AttributeValue,
  BatchGetItemCommand,
  BatchWriteItemCommand,
  type DynamoDBClient,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import type { Ledger, LedgerEntry } from '../types';

const MAX_GET_KEYS = 100;
const MAX_WRITE_ITEMS = 25;
/** Calls in flight at once per lookup/record: a 10,000-event batch is hundreds of calls. */
const CONCURRENCY = 16;
/** Rounds of retrying what DynamoDB returned as unprocessed (throttling) before giving up. */
const UNPROCESSED_ROUNDS = 6;
const UNPROCESSED_BASE_DELAY_MS = 50;
const UNPROCESSED_MAX_DELAY_MS = 1_000;
/** Powertools Idempotency's status for a finished record. */
export const COMPLETED = 'COMPLETED';

/** The ledger could not be read or written; the caller delivers anyway (the Idempotency-Key protects endpoints). */
export class LedgerError extends Error {
  override readonly name = 'LedgerError';
  constructor(
    readonly operation: 'lookup' | 'record',
    readonly table: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(
      `delivery ledger ${operation} on table ${table} failed: ${message}; check DELIVERY_LEDGER_TABLE, that the table ` +
        `exists with a string partition key 'id', and that the function may dynamodb:BatchGetItem/BatchWriteItem on it`,
      options,
    );
  }
}

/** The ledger item id of one (event, endpoint) delivery. */
export function ledgerId(key: string, endpoint: string): string {
  return `${key}#${endpoint}`;
}

function chunk<T>(items: T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

/** Runs `work` over `items`, at most `limit` at a time; rejects with the first error once all started work ends. */
async function forEachLimit<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !failure) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function unprocessedDelay(round: number): number {
  const cap = Math.min(UNPROCESSED_MAX_DELAY_MS, UNPROCESSED_BASE_DELAY_MS * 2 ** round);
  return cap / 2 + Math.random() * (cap / 2);
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

export interface LedgerOptions {
  table: string;
  /** Every endpoint name: a lookup asks about each (event, endpoint) pair. */
  endpoints: string[];
  /** DELIVERY_LEDGER_TTL_S: items expire this long after the delivery. */
  ttlS: number;
  now?: () => number;
}

/**
 * The delivery ledger: one item per (event, endpoint) delivery, in Powertools Idempotency's layout (partition key
 * `id`, TTL attribute `expiration` in epoch seconds, `status` COMPLETED).
 * Not Powertools' DynamoDBPersistenceLayer: it does one conditional write per record before and after each call,
 * while a batch needs one batched read for up to 10,000 events × N endpoints before fan-out and batched writes after.
 */
export function createLedger(dynamodb: DynamoDBClient, options: LedgerOptions): Ledger {
  const { table, endpoints, ttlS } = options;
  const now = options.now ?? Date.now;

  /** Calls `send` with what is pending until DynamoDB has processed all of it, backing off between rounds. */
  const untilProcessed = async <T>(
    operation: 'lookup' | 'record',
    what: string,
    initial: T[],
    signal: AbortSignal,
    send: (pending: T[]) => Promise<T[]>,
  ) => {
    let pending = initial;
    for (let round = 0; pending.length > 0; round++) {
      if (round > 0) {
        if (round > UNPROCESSED_ROUNDS) {
          throw new LedgerError(
            operation,
            table,
            `${pending.length} ${what} still unprocessed after ${UNPROCESSED_ROUNDS} retries`,
          );
        }
        await sleep(unprocessedDelay(round - 1), signal);
      }
      pending = await send(pending);
    }
  };

  const getChunk = async (ids: string[], found: Set<string>, signal: AbortSignal) => {
    const nowS = Math.floor(now() / 1000);
    const keys: Record<string, AttributeValue>[] = ids.map((id) => ({ id: { S: id } }));
    await untilProcessed('lookup', 'key(s)', keys, signal, async (pending) => {
      const response = await dynamodb.send(
        new BatchGetItemCommand({
          RequestItems: {
            [table]: {
              Keys: pending,
              ProjectionExpression: 'id, expiration, #status',
              ExpressionAttributeNames: { '#status': 'status' },
            },
          },
        }),
        { abortSignal: signal },
      );
      for (const item of response.Responses?.[table] ?? []) {
        const id = item.id?.S;
        const expiration = Number(item.expiration?.N ?? Number.POSITIVE_INFINITY);
        // DynamoDB deletes expired items up to days late: an expired item no longer counts.
        if (id && item.status?.S === COMPLETED && expiration > nowS) found.add(id);
      }
      return response.UnprocessedKeys?.[table]?.Keys ?? [];
    });
  };

  const writeChunk = (requests: WriteRequest[], signal: AbortSignal) =>
    untilProcessed('record', 'item(s)', requests, signal, async (pending) => {
      const response = await dynamodb.send(new BatchWriteItemCommand({ RequestItems: { [table]: pending } }), {
        abortSignal: signal,
      });
      return response.UnprocessedItems?.[table] ?? [];
    });

  const wrap = async (operation: 'lookup' | 'record', run: () => Promise<void>) => {
    try {
      await run();
    } catch (error) {
      if (error instanceof LedgerError) throw error;
      throw new LedgerError(operation, table, describe(error), { cause: error });
    }
  };

  return {
    async lookup(
      keys: string[],
      signal: AbortSignal,
      endpointsOf?: (key: string) => readonly string[],
    ): Promise<Map<string, Set<string>>> {
      const owners = new Map<string, { key: string; endpoint: string }>();
      for (const key of keys) {
        for (const endpoint of endpointsOf?.(key) ?? endpoints) owners.set(ledgerId(key, endpoint), { key, endpoint });
      }
      const found = new Set<string>();
      // BatchGetItem refuses duplicate keys in one call; the map above already removed them.
      await wrap('lookup', () =>
        forEachLimit(chunk([...owners.keys()], MAX_GET_KEYS), CONCURRENCY, (ids) => getChunk(ids, found, signal)),
      );
      const delivered = new Map<string, Set<string>>();
      for (const id of found) {
        const owner = owners.get(id);
        if (!owner) continue;
        const set = delivered.get(owner.key) ?? new Set<string>();
        set.add(owner.endpoint);
        delivered.set(owner.key, set);
      }
      return delivered;
    },

    async record(entries: LedgerEntry[], signal: AbortSignal): Promise<void> {
      const expiration = String(Math.floor(now() / 1000) + ttlS);
      const ids = new Set(entries.map((entry) => ledgerId(entry.key, entry.endpoint)));
      const requests: WriteRequest[] = [...ids].map((id) => ({
        PutRequest: { Item: { id: { S: id }, expiration: { N: expiration }, status: { S: COMPLETED } } },
      }));
      await wrap('record', () =>
        forEachLimit(chunk(requests, MAX_WRITE_ITEMS), CONCURRENCY, (batch) => writeChunk(batch, signal)),
      );
    },
  };
}
