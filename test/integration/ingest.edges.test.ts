import { SSMClient } from '@aws-sdk/client-ssm';
import type { SQSBatchResponse } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createSecretSource } from '../../lib/credentials/credentials';
import { createIngest, type Ingest, type IngestDeps, idempotencyKey, loadConfig, secretRefs } from '../../lib/index';
import { GROUPED_IDS_PER_LINE, settleReserveMs } from '../../lib/ingest/ingest';
import type { BackoffItem, Ledger, LedgerEntry, QuarantineItem } from '../../lib/types';
import { LOCAL_AWS } from '../support/aws';
import { startCredentialStores } from '../support/credential-stores';
import { TestEndpoint } from '../support/endpoints';
import { cloudEvent, eventRecord, lambdaContext, sqsEvent, sqsRecord } from '../support/events';
import { captureLogs } from '../support/logs';
import { eventHistoryMatches } from '../support/telemetry-check';

// The side effects are our own interfaces (lib/types.ts); these in-memory versions record what the engine asks of them.
// The SQS and DynamoDB implementations are tested against local servers in their own files.

let alpha: TestEndpoint;
let beta: TestEndpoint;
let ingest: Ingest | undefined;

beforeAll(async () => {
  [alpha, beta] = await Promise.all([TestEndpoint.start(), TestEndpoint.start()]);
});
afterAll(async () => {
  await Promise.all([alpha.close(), beta.close()]);
});
afterEach(async () => {
  await ingest?.close();
  ingest = undefined;
  alpha.reset();
  beta.reset();
});

function pipeline(deps: IngestDeps, env: Record<string, string> = {}) {
  const config = loadConfig({
    ENDPOINTS: `alpha=${alpha.url},beta=${beta.url}`,
    DELIVERY_RETRY_BASE_MS: '5',
    DELIVERY_RETRY_MAX_MS: '10',
    ...env,
  });
  ingest = createIngest(config, deps);
  return ingest;
}

const failed = (response: SQSBatchResponse) => response.batchItemFailures.map((item) => item.itemIdentifier).sort();

function recordingQuarantine(accept: (item: QuarantineItem) => boolean = () => true) {
  const sent: QuarantineItem[] = [];
  return {
    sent,
    async send(items: QuarantineItem[]) {
      sent.push(...items);
      return new Set(items.filter(accept).map((item) => item.record.messageId));
    },
  };
}

function recordingBackoff() {
  const items: BackoffItem[] = [];
  return { items, apply: async (batch: BackoffItem[]) => void items.push(...batch) };
}

function memoryLedger(initial: LedgerEntry[] = []) {
  const entries = new Map<string, Set<string>>();
  const add = (entry: LedgerEntry) => {
    const set = entries.get(entry.key) ?? new Set<string>();
    set.add(entry.endpoint);
    entries.set(entry.key, set);
  };
  initial.forEach(add);
  const ledger: Ledger & { entries: typeof entries; lookups: string[][] } = {
    entries,
    lookups: [],
    async lookup(keys) {
      ledger.lookups.push(keys);
      return new Map(keys.filter((key) => entries.has(key)).map((key) => [key, entries.get(key)!]));
    },
    async record(batch) {
      batch.forEach(add);
    },
  };
  return ledger;
}

describe('quarantine', () => {
  it('acknowledges poison records once they are quarantined, with the reason', async () => {
    const quarantine = recordingQuarantine();
    const poison = sqsRecord('{not json');
    const good = eventRecord('ok');
    const response = await pipeline({ quarantine }).handle(sqsEvent([poison, good]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(quarantine.sent).toEqual([expect.objectContaining({ record: poison, reason: 'not-json' })]);
  });

  it('quarantines an event an endpoint permanently rejects, naming the endpoint and status', async () => {
    beta.respond(() => ({ status: 422 }));
    const quarantine = recordingQuarantine();
    const record = eventRecord('refused');
    const response = await pipeline({ quarantine }).handle(sqsEvent([record]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(quarantine.sent).toEqual([
      expect.objectContaining({ record, reason: 'rejected-by-endpoint', endpoint: 'beta', status: 422 }),
    ]);
  });

  it('reports the records the quarantine could not take, and backs them off: nothing is lost', async () => {
    const first = sqsRecord('nope');
    const second = sqsRecord('[]');
    const quarantine = recordingQuarantine((item) => item.record.messageId === first.messageId);
    const backoff = recordingBackoff();
    const response = await pipeline({ quarantine, backoff }).handle(sqsEvent([first, second]), lambdaContext());
    expect(failed(response)).toEqual([second.messageId]);
    expect(backoff.items.map((item) => item.record.messageId)).toEqual([second.messageId]);
  });

  it('reports every poison record when the quarantine throws', async () => {
    const records = [sqsRecord('x'), sqsRecord(JSON.stringify({ ...cloudEvent('a'), type: '' }))];
    const quarantine = {
      send: async () => {
        throw new Error('queue unreachable');
      },
    };
    const response = await pipeline({ quarantine }).handle(sqsEvent(records), lambdaContext());
    expect(failed(response)).toEqual(records.map((record) => record.messageId).sort());
  });

  it('lets a FIFO group continue past a quarantined record', async () => {
    const quarantine = recordingQuarantine();
    const records = [
      eventRecord('f0', { groupId: 'g' }),
      sqsRecord('garbage', { groupId: 'g' }),
      eventRecord('f2', { groupId: 'g' }),
    ];
    const response = await pipeline({ quarantine }).handle(sqsEvent(records), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(alpha.received.map((request) => request.eventId)).toEqual(['f0', 'f2']);
    expect(quarantine.sent.map((item) => item.record)).toEqual([records[1]]);
  });

  it('blocks a FIFO group when its poison record cannot be quarantined: nothing later is sent (issue 9, defect 3)', async () => {
    for (const quarantine of [
      recordingQuarantine(() => false),
      {
        async send(): Promise<Set<string>> {
          throw new Error('SQS unavailable');
        },
      },
    ]) {
      const records = [
        eventRecord('h0', { groupId: 'g' }),
        sqsRecord('garbage', { groupId: 'g' }),
        eventRecord('h2', { groupId: 'g' }),
        eventRecord('other', { groupId: 'o' }),
      ];
      const backoff = recordingBackoff();
      const response = await pipeline({ quarantine, backoff }).handle(sqsEvent(records), lambdaContext());
      expect(failed(response)).toEqual([records[1]!.messageId, records[2]!.messageId].sort());
      expect(alpha.received.map((request) => request.eventId).sort()).toEqual(['h0', 'other']);
      expect(backoff.items.map((item) => item.record.messageId).sort()).toEqual(failed(response));
      await ingest?.close();
      alpha.reset();
      beta.reset();
    }
  });
});

describe('visibility backoff', () => {
  it('is asked for exactly the failed records, including FIFO records blocked behind a failure', async () => {
    beta.respond((request) => ({ status: request.eventId === 'b1' ? 500 : 200 }));
    const backoff = recordingBackoff();
    const records = [
      eventRecord('b0', { groupId: 'g' }),
      eventRecord('b1', { groupId: 'g' }),
      eventRecord('b2', { groupId: 'g' }),
    ];
    const response = await pipeline({ backoff }).handle(sqsEvent(records), lambdaContext());
    const expected = [records[1]!.messageId, records[2]!.messageId].sort();
    expect(failed(response)).toEqual(expected);
    expect(backoff.items.map((item) => item.record.messageId).sort()).toEqual(expected);
  });

  it('still reports the records when the backoff throws', async () => {
    alpha.respond(() => ({ status: 500 }));
    const record = eventRecord('bx');
    const backoff = {
      apply: async () => {
        throw new Error('ChangeMessageVisibilityBatch denied');
      },
    };
    const response = await pipeline({ backoff }).handle(sqsEvent([record]), lambdaContext());
    expect(failed(response)).toEqual([record.messageId]);
  });
});

describe('delivery ledger', () => {
  it('skips the endpoints that already took a redelivered event', async () => {
    const ledger = memoryLedger();
    beta.respond((_request, attempt) => ({ status: attempt <= 3 ? 503 : 200 }));
    const run = pipeline({ ledger });
    const record = eventRecord('again');
    const first = await run.handle(sqsEvent([record]), lambdaContext());
    expect(failed(first)).toEqual([record.messageId]);
    expect(alpha.accepted.get('again')).toBe(1);

    // SQS hands the same message out again, its receive count raised.
    const redelivered = { ...record, attributes: { ...record.attributes, ApproximateReceiveCount: '2' } };
    const second = await run.handle(sqsEvent([redelivered]), lambdaContext());
    expect(second.batchItemFailures).toEqual([]);
    expect(alpha.received).toHaveLength(1);
    expect(beta.accepted.get('again')).toBe(1);
  });

  it('delivers to every endpoint when the ledger cannot be read, and still acknowledges correctly', async () => {
    const ledger: Ledger = {
      lookup: async () => {
        throw new Error('ResourceNotFoundException');
      },
      record: async () => {
        throw new Error('ResourceNotFoundException');
      },
    };
    const record = eventRecord('no-ledger');
    const response = await pipeline({ ledger }).handle(sqsEvent([record]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(alpha.accepted.get('no-ledger')).toBe(1);
    expect(beta.accepted.get('no-ledger')).toBe(1);
  });

  it('writes the entries of the endpoints it skipped again, so a second redrive is deduplicated too', async () => {
    const ledger = memoryLedger();
    const written: LedgerEntry[][] = [];
    const recording: Ledger = {
      lookup: ledger.lookup,
      record: async (batch, signal) => {
        written.push(batch);
        await ledger.record(batch, signal);
      },
    };
    // every-delivery: the mode that writes for delivered events too (the default writes only what comes back).
    const run = pipeline({ ledger: recording }, { DELIVERY_LEDGER_MODE: 'every-delivery' });
    const record = eventRecord('redriven');
    await run.handle(sqsEvent([record]), lambdaContext());
    written.length = 0;
    // Redriven: every endpoint has it already; their entries get a new expiration.
    const again = await run.handle(sqsEvent([record]), lambdaContext());
    expect(again.batchItemFailures).toEqual([]);
    expect(alpha.accepted.get('redriven')).toBe(1);
    expect(
      written
        .flat()
        .map((entry) => entry.endpoint)
        .sort(),
    ).toEqual(['alpha', 'beta']);
  });

  it('looks every distinct redelivered event up once per batch', async () => {
    const ledger = memoryLedger();
    const again = { attributes: { ...eventRecord('x').attributes, ApproximateReceiveCount: '3' } };
    const records = [eventRecord('l1', again), eventRecord('l1', again), eventRecord('l2', again), sqsRecord('bad')];
    await pipeline({ ledger }).handle(sqsEvent(records), lambdaContext());
    expect(ledger.lookups).toHaveLength(1);
    expect(ledger.lookups[0]).toHaveLength(2);
  });
});

describe('4xx classification (issue 9, defect 4)', () => {
  // ENDPOINTS endpoints are structured: the headers are ours, so a 431 is the endpoint's trouble, not the event's.
  it('quarantines 400, 413, 415 and 422 only; other 4xx (431 too, in structured mode) are backed off', async () => {
    const statuses = [400, 413, 415, 422, 404, 405, 409, 410, 418, 431, 451];
    beta.respond((request) => ({ status: Number(request.eventId?.split('-')[1]) }));
    const quarantine = recordingQuarantine();
    const backoff = recordingBackoff();
    const records = statuses.map((status) => eventRecord(`s-${status}`));
    const response = await pipeline({ quarantine, backoff }).handle(sqsEvent(records), lambdaContext());
    const quarantined = quarantine.sent.map((item) => item.status).sort();
    expect(quarantined).toEqual([400, 413, 415, 422]);
    const backedOff = backoff.items.map((item) => item.record.messageId).sort();
    const endpointTrouble = records.filter((_, i) => ![400, 413, 415, 422].includes(statuses[i]!));
    expect(backedOff).toEqual(endpointTrouble.map((record) => record.messageId).sort());
    expect(failed(response)).toEqual(backedOff);
    // Not retried within the invocation: one request each.
    expect(beta.received).toHaveLength(statuses.length);
  });

  it('on 401/403 reads the credential again once (bypassing the cache) and retries with it', async () => {
    beta.respond((request) => ({ status: request.headers.authorization === 'Bearer fresh' ? 200 : 401 }));
    const refreshed: string[] = [];
    // One FIFO group: the records go one after the other, so the later ones can use the refreshed credential.
    const records = ['c-1', 'c-2', 'c-3'].map((id) => eventRecord(id, { groupId: 'creds' }));
    const response = await pipeline({
      credentials: async () => new Map([['beta', { kind: 'bearer', token: 'stale' } as const]]),
      refreshCredential: async (endpoint) => {
        refreshed.push(endpoint);
        return { kind: 'bearer', token: 'fresh' };
      },
    }).handle(sqsEvent(records), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(refreshed).toEqual(['beta']);
    expect(beta.accepted.size).toBe(3);
    // Only the first record met the stale token; the ones sent after the refresh used the fresh one at once.
    expect(beta.received.map((request) => request.headers.authorization)).toEqual([
      'Bearer stale',
      'Bearer fresh',
      'Bearer fresh',
      'Bearer fresh',
    ]);
  });

  it('credentials refused after the refresh: failed with backoff, not quarantined, and the log line says so', async () => {
    beta.respond(() => ({ status: 403 }));
    const { logger, metrics, lines } = captureLogs();
    const quarantine = recordingQuarantine();
    const backoff = recordingBackoff();
    const record = eventRecord('refused');
    const response = await pipeline({
      logger,
      metrics,
      quarantine,
      backoff,
      credentials: async () => new Map([['beta', { kind: 'bearer', token: 'stale' } as const]]),
      refreshCredential: async () => ({ kind: 'bearer', token: 'still-wrong' }),
    }).handle(sqsEvent([record]), lambdaContext());
    expect(failed(response)).toEqual([record.messageId]);
    expect(quarantine.sent).toEqual([]);
    expect(backoff.items.map((item) => item.record.messageId)).toEqual([record.messageId]);
    expect(beta.received.map((request) => request.headers.authorization)).toEqual([
      'Bearer stale',
      'Bearer still-wrong',
    ]);
    const line = lines.find((candidate) => candidate.message === 'delivery failed');
    expect(line).toMatchObject({ endpoint: 'beta', kind: 'unauthorized', status: 403, error: 'CREDENTIALS_REFUSED' });
    expect(String(line?.hint)).toContain('credentials were refused');
  });
});

describe('the 401/403 hint says what happened to the credential (review finding 9)', () => {
  it('no credential configured, or a refresh that failed: the hint does not claim they were read again', async () => {
    beta.respond(() => ({ status: 401 }));
    const { logger, metrics, lines } = captureLogs();
    await pipeline({ logger, metrics }).handle(sqsEvent([eventRecord('none')]), lambdaContext());
    await pipeline({
      logger,
      metrics,
      credentials: async () => new Map([['beta', { kind: 'bearer', token: 'stale' } as const]]),
      refreshCredential: async () => {
        throw new Error('ThrottlingException');
      },
    }).handle(sqsEvent([eventRecord('throttled')]), lambdaContext());
    const failures = lines.filter((line) => line.message === 'delivery failed' && line.endpoint === 'beta');
    expect(failures.map((line) => line.error)).toEqual([
      'CREDENTIALS_NONE',
      'CREDENTIALS_REFRESH_FAILED: ThrottlingException',
    ]);
    for (const line of failures) expect(String(line.hint)).not.toContain('even after reading them again');
    expect(String(failures[0]?.hint)).toContain('add its entry to ENDPOINT_CREDENTIALS');
    expect(String(failures[1]?.hint)).toContain('reading them again failed');
  });
});

describe('credential refresh limited per instance (review finding 2)', () => {
  it('a refused credential is read again once per interval across batches, and not retried when unchanged', async () => {
    beta.respond(() => ({ status: 401 }));
    let stored: { kind: 'bearer'; token: string } = { kind: 'bearer', token: 'stale' };
    let reads = 0;
    const { logger, metrics, lines } = captureLogs();
    const ingest = pipeline({
      logger,
      metrics,
      // Like the real source: a refresh replaces the cached value the next batch reads.
      credentials: async () => new Map([['beta', stored]]),
      refreshCredential: async () => {
        reads++;
        stored = { kind: 'bearer', token: 'revoked' };
        return stored;
      },
    });
    for (const id of ['r-1', 'r-2', 'r-3']) await ingest.handle(sqsEvent([eventRecord(id)]), lambdaContext());
    expect(reads).toBe(1);
    // Later batches POST once: the value a read would give is the one just refused.
    expect(beta.received.map((request) => request.headers.authorization)).toEqual([
      'Bearer stale',
      'Bearer revoked',
      'Bearer revoked',
      'Bearer revoked',
    ]);
    const refusals = lines.filter((candidate) => candidate.message === 'delivery failed').map((line) => line.error);
    expect(refusals).toEqual(['CREDENTIALS_REFUSED', 'CREDENTIALS_NOT_REFRESHED', 'CREDENTIALS_NOT_REFRESHED']);
  });
});

describe('log volume under an open circuit (issue 9, defect 11)', () => {
  it('writes one line per endpoint per batch for circuit-open failures, with the count and sample ids', async () => {
    beta.respond(() => ({ status: 503 }));
    const { logger, metrics, lines } = captureLogs();
    const run = pipeline(
      { logger, metrics },
      { CIRCUIT_BREAKER_THRESHOLD: '1', CIRCUIT_BREAKER_HALF_OPEN_MS: '600000', DELIVERY_MAX_ATTEMPTS: '1' },
    );
    await run.handle(sqsEvent([eventRecord('opens')]), lambdaContext());
    lines.length = 0;
    const records = Array.from({ length: 60 }, (_, i) => eventRecord(`open-${i}`));
    const response = await run.handle(sqsEvent(records), lambdaContext());
    expect(failed(response)).toHaveLength(60);
    expect(beta.received).toHaveLength(1);
    const failures = lines.filter((line) => line.endpoint === 'beta' && line.level === 'WARN');
    // Every id, in lines of GROUPED_IDS_PER_LINE, as one comma-joined field the event history query can match.
    expect(failures).toEqual([
      expect.objectContaining({ kind: 'circuit-open', records: 60, messageIds: expect.any(String) }),
      expect.objectContaining({ kind: 'circuit-open', records: 60, messageIds: expect.any(String) }),
    ]);
    const ids = failures.flatMap((line) => String(line.messageIds).split(','));
    expect(ids.sort()).toEqual(records.map((record) => record.messageId).sort());
    expect(String(failures[0]!.messageIds).split(',')).toHaveLength(GROUPED_IDS_PER_LINE);
    // The saved query finds record 21 (and 51) of the batch, which the first 20 ids left out.
    for (const record of [records[20]!, records[50]!]) {
      expect(failures.filter((line) => eventHistoryMatches(line, record.messageId))).toHaveLength(1);
    }
  });
});

describe('credentials the function cannot read (review: the unavailable answer was untested)', () => {
  const refused = async (): Promise<never> => {
    throw new Error('AccessDeniedException: ssm:GetParameters');
  };
  it.each([
    ['credentials', { credentials: refused }],
    ['secrets', { secrets: refused }],
  ] as const)(
    'never read (%s): every record reported failed, nothing sent, one error line and the counts',
    async (_what, deps) => {
      const { logger, metrics, lines } = captureLogs();
      const added = vi.spyOn(metrics, 'addMetric');
      const records = [eventRecord('u-1'), eventRecord('u-2'), eventRecord('u-3')];
      const before = Date.now();
      const response = await pipeline({ logger, metrics, ...deps }).handle(sqsEvent(records), lambdaContext());
      const elapsed = Date.now() - before;
      expect(response.batchItemFailures).toEqual(records.map((record) => ({ itemIdentifier: record.messageId })));
      expect([...alpha.received, ...beta.received]).toEqual([]);
      expect(lines.filter((line) => line.level === 'ERROR')).toEqual([
        expect.objectContaining({
          message: 'credentials unavailable; every record reported failed',
          records: 3,
          hint: expect.stringContaining('SSM parameters / Secrets Manager secrets'),
        }),
      ]);
      // Nothing was ever read, so there is no last value to fall back on and no line claiming one.
      expect(lines.filter((line) => String(line.message).includes('not read again'))).toEqual([]);
      const summary = lines.filter((line) => line.message === 'batch processed');
      expect(summary).toEqual([expect.objectContaining({ records: 3, acknowledged: 0, failed: 3 })]);
      expect(summary[0]!.durationMs).toBeGreaterThanOrEqual(0);
      expect(summary[0]!.durationMs).toBeLessThanOrEqual(elapsed);
      const metric = (name: string) => added.mock.calls.filter(([n]) => n === name).map(([, , value]) => value);
      expect([metric('RecordsReceived'), metric('RecordsFailed')]).toEqual([[3], [3]]);
    },
  );

  it('keeps sending with the last credentials read when a later read fails, and says so once', async () => {
    const { logger, metrics, lines } = captureLogs();
    let down = false;
    const run = pipeline({
      logger,
      metrics,
      credentials: async () => {
        if (down) throw new Error('ThrottlingException');
        return new Map([['beta', { kind: 'bearer', token: 'kept' } as const]]);
      },
    });
    await run.handle(sqsEvent([eventRecord('read-1')]), lambdaContext());
    down = true;
    const response = await run.handle(sqsEvent([eventRecord('read-2')]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(beta.received.map((request) => request.headers.authorization)).toEqual(['Bearer kept', 'Bearer kept']);
    expect(lines.filter((line) => String(line.message).includes('not read again'))).toEqual([
      expect.objectContaining({
        level: 'WARN',
        message: 'credentials not read again; using the last ones read',
        error: expect.stringContaining('ThrottlingException'),
      }),
    ]);
  });
});

describe('the batch line (review: per-endpoint counts and durationMs were unchecked)', () => {
  it('counts per endpoint, for this batch only, what was delivered, failed, retried and skipped', async () => {
    // flaky: beta refuses the first attempt; down: beta refuses every attempt (3 by default).
    beta.respond((request, attempt) => ({
      status: request.eventId === 'down' || (request.eventId === 'flaky' && attempt === 1) ? 503 : 200,
    }));
    const { logger, metrics, lines } = captureLogs();
    const added = vi.spyOn(metrics, 'addMetric');
    const run = pipeline({ logger, metrics, ledger: memoryLedger() }, { CIRCUIT_BREAKER_THRESHOLD: '0' });
    const down = eventRecord('down');
    const before = Date.now();
    await run.handle(sqsEvent([eventRecord('flaky'), down]), lambdaContext());
    const elapsed = Date.now() - before;
    // SQS hands "down" out again: the ledger says alpha has it.
    const redelivered = { ...down, attributes: { ...down.attributes, ApproximateReceiveCount: '2' } };
    await run.handle(sqsEvent([redelivered]), lambdaContext());
    const batches = lines.filter((line) => line.message === 'batch processed');
    expect(batches.map((line) => line.endpoints)).toEqual([
      {
        alpha: { delivered: 2, failed: 0, skipped: 0, retries: 0 },
        beta: { delivered: 1, failed: 1, skipped: 0, retries: 3 },
      },
      {
        alpha: { delivered: 0, failed: 0, skipped: 1, retries: 0 },
        beta: { delivered: 0, failed: 1, skipped: 0, retries: 2 },
      },
    ]);
    expect(batches[0]!.durationMs).toBeGreaterThanOrEqual(0);
    expect(batches[0]!.durationMs).toBeLessThanOrEqual(elapsed);
    const duration = added.mock.calls.find(([name]) => name === 'BatchDuration')?.[2];
    expect(duration).toBeGreaterThanOrEqual(0);
    expect(duration).toBeLessThanOrEqual(elapsed);
  });

  it('sorts every record of the batch into the counts on-call reads', async () => {
    beta.respond((request) => ({ status: { first: 503, refused: 400 }[String(request.eventId)] ?? 200 }));
    const { logger, metrics, lines } = captureLogs();
    // The quarantine takes one invalid body and the rejected event, and refuses the other invalid body ("[]").
    const quarantine = recordingQuarantine((item) => item.record.body !== '[]');
    const records = [
      eventRecord('ok'),
      sqsRecord('nope'),
      sqsRecord('[]'),
      eventRecord('first', { groupId: 'g' }),
      eventRecord('second', { groupId: 'g' }),
      eventRecord('refused'),
    ];
    const response = await pipeline({ logger, metrics, quarantine }, { DELIVERY_MAX_ATTEMPTS: '1' }).handle(
      sqsEvent(records),
      lambdaContext(),
    );
    expect(failed(response)).toEqual([records[2]!, records[3]!, records[4]!].map((r) => r.messageId).sort());
    expect(lines.filter((line) => line.message === 'batch processed')).toEqual([
      expect.objectContaining({
        records: 6,
        acknowledged: 3,
        failed: 3,
        invalid: 2,
        rejected: 1,
        quarantined: 2,
        blocked: 1,
        routed: 3,
        unrouted: 0,
      }),
    ]);
  });

  it('a 401 from an endpoint with no credential: no refresh is attempted, and the line says it has none', async () => {
    beta.respond(() => ({ status: 401 }));
    const { logger, metrics, lines } = captureLogs();
    let refreshed = 0;
    await pipeline({
      logger,
      metrics,
      refreshCredential: async () => {
        refreshed++;
        return { kind: 'bearer', token: 'found' };
      },
    }).handle(sqsEvent([eventRecord('no-credentials')]), lambdaContext());
    const errors = lines.filter((line) => line.message === 'delivery failed').map((line) => line.error);
    expect([errors, refreshed]).toEqual([['CREDENTIALS_NONE'], 0]);
  });

  it('answers an empty batch at once: no credential read, no line, no metric', async () => {
    const { logger, metrics, lines } = captureLogs();
    const added = vi.spyOn(metrics, 'addMetric');
    let reads = 0;
    const credentials = async () => {
      reads++;
      return new Map();
    };
    const response = await pipeline({ logger, metrics, credentials }).handle(sqsEvent([]), lambdaContext());
    expect(response).toEqual({ batchItemFailures: [] });
    expect([reads, lines, added.mock.calls]).toEqual([0, [], []]);
  });
});

describe('the ledger, asked only when it can help', () => {
  it('in the default mode a first receive is not looked up; without a ledger nothing is said about one', async () => {
    const ledger = memoryLedger();
    await pipeline({ ledger }).handle(sqsEvent([eventRecord('first-receive')]), lambdaContext());
    expect(ledger.lookups).toEqual([]);
    await ingest?.close();
    const { logger, metrics, lines } = captureLogs();
    const again = eventRecord('again', {
      attributes: { ...eventRecord('x').attributes, ApproximateReceiveCount: '2' },
    });
    const response = await pipeline({ logger, metrics }).handle(sqsEvent([again]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(lines.filter((line) => line.level !== 'INFO' && line.level !== 'DEBUG')).toEqual([]);
  });
});

describe('routing with some endpoints filtered and some not', () => {
  it('sends an event only to the endpoints whose filter it matches, and to every unfiltered endpoint', async () => {
    const config = loadConfig(
      { DELIVERY_RETRY_BASE_MS: '5', DELIVERY_RETRY_MAX_MS: '10' },
      {
        document: {
          endpoints: [
            { name: 'alpha', url: alpha.url, filter: { type: 'com.example.refund.issued' } },
            { name: 'beta', url: beta.url },
          ],
        },
        source: 'test.yml',
      },
    );
    // The ledger is asked only about the endpoints the event is routed to: beta, not the filtered-out alpha.
    const ledger = memoryLedger();
    const asked: (readonly string[])[] = [];
    const lookup: Ledger['lookup'] = (keys, signal, endpointsOf) => {
      asked.push(...keys.map((key) => endpointsOf?.(key) ?? []));
      return ledger.lookup(keys, signal, endpointsOf);
    };
    ingest = createIngest(config, { ledger: { lookup, record: ledger.record } });
    const again = { attributes: { ...eventRecord('x').attributes, ApproximateReceiveCount: '2' } };
    const response = await ingest.handle(sqsEvent([eventRecord('order', again)]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect([alpha.received.length, beta.accepted.get('order')]).toEqual([0, 1]);
    expect(asked).toEqual([['beta']]);
  });
});

describe('two records of one event (same source + id) routed to different endpoints (issue 15, A5)', () => {
  function routedByType() {
    const config = loadConfig(
      { DELIVERY_RETRY_BASE_MS: '5', DELIVERY_RETRY_MAX_MS: '10' },
      {
        document: {
          endpoints: [
            { name: 'alpha', url: alpha.url, filter: { type: 'com.example.refund.issued' } },
            { name: 'beta', url: beta.url, filter: { type: 'com.example.order.created' } },
          ],
        },
        source: 'test.yml',
      },
    );
    return config;
  }
  const refund = (id: string) => JSON.stringify(cloudEvent(id, { type: 'com.example.refund.issued' }));

  it('each record reaches the endpoint its own filter names before it is acknowledged', async () => {
    const ledger = memoryLedger();
    ingest = createIngest(routedByType(), { ledger });
    const records = [sqsRecord(refund('same')), eventRecord('same')];
    const response = await ingest.handle(sqsEvent(records), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect([alpha.accepted.get('same'), beta.accepted.get('same')]).toEqual([1, 1]);
    expect(alpha.received[0]?.body.toString()).toContain('refund.issued');
    expect(beta.received[0]?.body.toString()).toContain('order.created');
  });

  it('a redelivered pair asks the ledger about both routed endpoints and skips what each already has', async () => {
    // beta took the event in an earlier invocation; alpha did not.
    const ledger = memoryLedger([{ key: idempotencyKey('urn:test:orders', 'same'), endpoint: 'beta' }]);
    const asked: (readonly string[])[] = [];
    const lookup: Ledger['lookup'] = (keys, signal, endpointsOf) => {
      asked.push(...keys.map((key) => [...(endpointsOf?.(key) ?? [])].sort()));
      return ledger.lookup(keys, signal, endpointsOf);
    };
    ingest = createIngest(routedByType(), { ledger: { lookup, record: ledger.record } });
    const again = { attributes: { ...eventRecord('x').attributes, ApproximateReceiveCount: '2' } };
    const records = [sqsRecord(refund('same'), again), eventRecord('same', again)];
    expect((await ingest.handle(sqsEvent(records), lambdaContext())).batchItemFailures).toEqual([]);
    expect(asked).toEqual([['alpha', 'beta']]);
    expect([alpha.accepted.get('same'), beta.received.length]).toEqual([1, 0]);
  });
});

describe('settleReserveMs (issue 9, defect 12: the docs say margin/2)', () => {
  it('gives the side effects until max(250 ms, DEADLINE_MARGIN_MS / 2) before the timeout', () => {
    expect(settleReserveMs(1000)).toBe(500);
    expect(settleReserveMs(2500)).toBe(1250);
    expect(settleReserveMs(500)).toBe(250);
    expect(settleReserveMs(60_001)).toBe(30_000);
  });
});

describe("an endpoints file's secret rotated in SSM: read again once after a 401, then the retry", () => {
  // The endpoint accepts only the token now in the store; the function still holds the one it read before.
  async function rotatedPipeline(accepted: string) {
    const parameters: Record<string, string> = { '/alpha/token': 'old' };
    const stores = await startCredentialStores(parameters, {});
    const document = {
      endpoints: [{ name: 'alpha', url: alpha.url, auth: { kind: 'bearer', token: { ssm: '/alpha/token' } } }],
    };
    const config = loadConfig(
      { DELIVERY_RETRY_BASE_MS: '5', DELIVERY_RETRY_MAX_MS: '10' },
      { document, source: 'test.yml' },
    );
    const ssmClient = new SSMClient({ ...LOCAL_AWS, endpoint: stores.url, maxAttempts: 1 });
    const secrets = createSecretSource(secretRefs(config.endpoints), { ssmClient });
    await secrets();
    parameters['/alpha/token'] = 'new';
    alpha.respond((request) => ({ status: request.headers.authorization === `Bearer ${accepted}` ? 200 : 401 }));
    const { logger, metrics, lines } = captureLogs();
    const quarantine = recordingQuarantine();
    const backoff = recordingBackoff();
    ingest = createIngest(config, { logger, metrics, quarantine, backoff, secrets, refreshSecrets: secrets.refresh });
    return { ingest, stores, lines, quarantine, backoff };
  }

  it('the retry with the new secret is accepted: record acknowledged', async () => {
    const { ingest, stores, quarantine } = await rotatedPipeline('new');
    try {
      const records = [eventRecord('rotated-1'), eventRecord('rotated-2')];
      const response = await ingest.handle(sqsEvent(records), lambdaContext());
      expect(failed(response)).toEqual([]);
      expect(quarantine.sent).toEqual([]);
      const tokens = alpha.received.map((request) => request.headers.authorization);
      expect(tokens.filter((token) => token === 'Bearer old').length).toBeGreaterThanOrEqual(1);
      expect(tokens.filter((token) => token === 'Bearer new')).toHaveLength(2);
    } finally {
      await stores.close();
    }
  });

  it('still refused with the new secret: failed with backoff, not quarantined, and the credentials log line', async () => {
    const { ingest, stores, lines, quarantine, backoff } = await rotatedPipeline('newer');
    try {
      const record = eventRecord('still-refused');
      const response = await ingest.handle(sqsEvent([record]), lambdaContext());
      expect(failed(response)).toEqual([record.messageId]);
      expect(quarantine.sent).toEqual([]);
      expect(backoff.items.map((item) => item.record.messageId)).toEqual([record.messageId]);
      expect(alpha.received.map((request) => request.headers.authorization)).toEqual(['Bearer old', 'Bearer new']);
      const line = lines.find((candidate) => candidate.message === 'delivery failed');
      expect(line).toMatchObject({
        endpoint: 'alpha',
        kind: 'unauthorized',
        status: 401,
        error: 'CREDENTIALS_REFUSED',
      });
      expect(String(line?.hint)).toContain('credentials were refused');
    } finally {
      await stores.close();
    }
  });
});
