import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BackoffError,
  backoffDelayS,
  createBackoff,
  SQS_MAX_VISIBILITY_S,
  VISIBILITY_CEILING_S,
} from '../../../lib/settle/backoff';
import { closedEndpoint, createQueue, type LocalQueue, localSqs, pollUntil, receiveAsRecords } from '../../support/aws';

const random01 = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
const policyArb = fc
  .tuple(fc.integer({ min: 0, max: 43_200 }), fc.integer({ min: 0, max: 43_200 }))
  .map(([a, b]) => ({ baseDelayS: Math.min(a, b), maxDelayS: Math.max(a, b) }));

function envelope(receiveCount: number, policy: { baseDelayS: number; maxDelayS: number }) {
  const d = Math.min(policy.maxDelayS, policy.baseDelayS * 2 ** (receiveCount - 1));
  return { low: Math.ceil(d / 2), high: d };
}

describe('backoffDelayS', () => {
  it('stays within [d/2, d] of the capped exponential delay, in whole seconds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000 }), policyArb, random01, (receiveCount, policy, r) => {
        const delay = backoffDelayS(receiveCount, policy, undefined, () => r);
        const { low, high } = envelope(receiveCount, policy);
        expect(Number.isInteger(delay)).toBe(true);
        expect(delay).toBeGreaterThanOrEqual(low);
        expect(delay).toBeLessThanOrEqual(high);
        expect(delay).toBeLessThanOrEqual(SQS_MAX_VISIBILITY_S);
      }),
    );
  });

  it('covers the whole jitter range: the lowest draw gives d/2, the highest d', () => {
    const policy = { baseDelayS: 10, maxDelayS: 900 };
    for (const receiveCount of [1, 2, 3, 4, 5, 6, 7, 10]) {
      const { low, high } = envelope(receiveCount, policy);
      expect(backoffDelayS(receiveCount, policy, undefined, () => 0)).toBe(low);
      expect(backoffDelayS(receiveCount, policy, undefined, () => 0.999_999_9)).toBe(high);
    }
    expect(backoffDelayS(1, policy, undefined, () => 0)).toBe(5);
    expect(backoffDelayS(7, policy, undefined, () => 0.999_999_9)).toBe(640);
    expect(backoffDelayS(8, policy, undefined, () => 0.999_999_9)).toBe(900);
  });

  it('never shortens as the receive count grows (for the same draw)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), policyArb, random01, (receiveCount, policy, r) => {
        const now = backoffDelayS(receiveCount, policy, undefined, () => r);
        const next = backoffDelayS(receiveCount + 1, policy, undefined, () => r);
        expect(next).toBeGreaterThanOrEqual(now);
      }),
    );
  });

  it('never exceeds RETRY_MAX_DELAY_S, whatever Retry-After says (issue 9, defect 2)', () => {
    const policy = { baseDelayS: 10, maxDelayS: 900 };
    // 429 with Retry-After: 86400, or an HTTP date hours ahead.
    for (const retryAfterS of [86_400, 6 * 3600, 42_000, 901]) {
      expect(backoffDelayS(1, policy, retryAfterS, () => 0)).toBe(900);
      expect(backoffDelayS(10, policy, retryAfterS, () => 0.5, VISIBILITY_CEILING_S)).toBe(900);
    }
  });

  it("uses the endpoint's Retry-After when it is longer, capped at RETRY_MAX_DELAY_S", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        policyArb,
        random01,
        fc.double({ min: 0.001, max: 200_000, noNaN: true }),
        (receiveCount, policy, r, retryAfterS) => {
          const without = backoffDelayS(receiveCount, policy, undefined, () => r);
          const delay = backoffDelayS(receiveCount, policy, retryAfterS, () => r);
          expect(delay).toBe(Math.min(Math.max(without, Math.ceil(retryAfterS)), policy.maxDelayS));
        },
      ),
    );
  });

  it('treats a missing or nonsensical receive count as the first receive', () => {
    const policy = { baseDelayS: 8, maxDelayS: 900 };
    for (const count of [Number.NaN, 0, -3]) expect(backoffDelayS(count, policy, undefined, () => 0)).toBe(4);
  });

  it('keeps under the given ceiling even when asked for more', () => {
    expect(backoffDelayS(1, { baseDelayS: 43_200, maxDelayS: 43_200 }, 10 ** 9, () => 0.5, VISIBILITY_CEILING_S)).toBe(
      VISIBILITY_CEILING_S,
    );
  });
  it('jitters exactly as documented: d/2 plus the draw times d/2, rounded up', () => {
    expect(backoffDelayS(1, { baseDelayS: 100, maxDelayS: 1_000 }, undefined, () => 0.1)).toBe(55);
  });

  it('ignores a Retry-After that is not a positive finite number', () => {
    const policy = { baseDelayS: 10, maxDelayS: 900 };
    const plain = backoffDelayS(2, policy, undefined, () => 0.5);
    for (const odd of [Number.NaN, Number.POSITIVE_INFINITY, -5, 0]) {
      expect(
        backoffDelayS(2, policy, odd, () => 0.5),
        String(odd),
      ).toBe(plain);
    }
  });

  it('names itself, the records, what SQS said and the permission to check in a BackoffError', () => {
    const error = new BackoffError([{ messageId: 'm-1', error: 'ReceiptHandleIsInvalid: gone' }]);
    expect(error.name).toBe('BackoffError');
    expect(error.message).toMatch(/^could not delay 1 failed record\(s\) \(.*m-1.*ReceiptHandleIsInvalid.*\)/);
    expect(error.message).toMatch(/sqs:ChangeMessageVisibility on the source queue/);
  });
});

describe.concurrent('createBackoff on local SQS', () => {
  const sqs = localSqs();
  afterAll(() => sqs.destroy());

  const visibleNow = async (queue: LocalQueue) =>
    (
      await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queue.url,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 0,
          VisibilityTimeout: 30,
        }),
      )
    ).Messages ?? [];

  /** Polls until `count` messages are visible again; asserts none came back before `minimumS` after `since`. */
  async function waitForReturn(queue: LocalQueue, count: number, since: number, minimumS: number) {
    const seen: string[] = [];
    await pollUntil(
      `${count} message(s) back on ${queue.name}`,
      async () => {
        const messages = await visibleNow(queue);
        if (messages.length > 0) expect(Date.now() - since).toBeGreaterThanOrEqual(minimumS * 1000);
        seen.push(...messages.map((m) => m.Body!));
        return seen.length >= count ? seen : undefined;
      },
      { timeoutMs: (minimumS * 2 + 10) * 1000, intervalMs: 100 },
    );
    return seen;
  }

  it('hides failed records for their backoff, then they come back', async () => {
    const queue = await createQueue(sqs, 'backoff');
    const records = await receiveAsRecords(sqs, queue, [{ body: 'first' }, { body: 'third' }]);
    // The third receive of a record: d = 1 × 2^2 = 4 s, jittered in [2, 4].
    const third = records.find((r) => r.body === 'third')!;
    third.attributes.ApproximateReceiveCount = '3';
    const first = records.find((r) => r.body === 'first')!;
    const backoff = createBackoff(sqs, { baseDelayS: 1, maxDelayS: 60 });

    const since = Date.now();
    await backoff.apply([{ record: first }, { record: third }], AbortSignal.timeout(10_000));
    // d = 1 for the first receive (jittered in [1, 1]); the third stays hidden at least 2 s.
    const minimumS: Record<string, number> = { first: 1, third: 2 };
    const backAt = new Map<string, number>();
    await pollUntil(
      'both records back',
      async () => {
        for (const message of await visibleNow(queue)) backAt.set(message.Body!, Date.now() - since);
        return backAt.size === 2 ? true : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    for (const [body, elapsedMs] of backAt) expect(elapsedMs, body).toBeGreaterThanOrEqual(minimumS[body]! * 1000);
  });

  it('honours a longer Retry-After from the endpoint', async () => {
    const queue = await createQueue(sqs, 'backoff-ra');
    const [record] = await receiveAsRecords(sqs, queue, [{ body: 'slow down' }]);
    const backoff = createBackoff(sqs, { baseDelayS: 1, maxDelayS: 5 });
    const since = Date.now();
    await backoff.apply([{ record: record!, retryAfterS: 3 }], AbortSignal.timeout(10_000));
    expect(await waitForReturn(queue, 1, since, 3)).toEqual(['slow down']);
  });

  it('changes visibility on each record’s own queue, in calls of at most 10', async () => {
    const [a, b] = await Promise.all([createQueue(sqs, 'backoff-a'), createQueue(sqs, 'backoff-b')]);
    const bodies = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => ({ body: `${prefix}-${i}` }));
    const records: SQSRecord[] = [
      ...(await receiveAsRecords(sqs, a, bodies('a', 23))),
      ...(await receiveAsRecords(sqs, b, bodies('b', 4))),
    ];
    const backoff = createBackoff(sqs, { baseDelayS: 2, maxDelayS: 2 });
    const since = Date.now();
    await backoff.apply(
      records.map((record) => ({ record })),
      AbortSignal.timeout(10_000),
    );
    const [backA, backB] = await Promise.all([waitForReturn(a, 23, since, 1), waitForReturn(b, 4, since, 1)]);
    expect(backA.sort()).toEqual(
      bodies('a', 23)
        .map((m) => m.body)
        .sort(),
    );
    expect(backB.sort()).toEqual(
      bodies('b', 4)
        .map((m) => m.body)
        .sort(),
    );
  });

  it('throws a BackoffError naming the records SQS refused, after changing the others', async () => {
    const queue = await createQueue(sqs, 'backoff-bad');
    const [good, stale] = await receiveAsRecords(sqs, queue, [{ body: 'good' }, { body: 'stale' }]);
    stale!.receiptHandle = 'not-a-receipt-handle';
    const backoff = createBackoff(sqs, { baseDelayS: 600, maxDelayS: 600 });
    const error = await backoff
      .apply([{ record: good! }, { record: stale! }], AbortSignal.timeout(10_000))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackoffError);
    expect((error as BackoffError).failures.map((f) => f.messageId)).toEqual([stale!.messageId]);
    expect((error as BackoffError).message).toMatch(/sqs:ChangeMessageVisibility/);
  });

  it('throws a BackoffError with the cause when SQS is unreachable', async () => {
    const queue = await createQueue(sqs, 'backoff-down');
    const [record] = await receiveAsRecords(sqs, queue, [{ body: 'x' }]);
    const down = localSqs(await closedEndpoint());
    const error = await createBackoff(down, { baseDelayS: 1, maxDelayS: 1 })
      .apply([{ record: record! }], AbortSignal.timeout(10_000))
      .catch((e: unknown) => e);
    down.destroy();
    expect(error).toBeInstanceOf(BackoffError);
    expect((error as BackoffError).failures).toEqual([
      { messageId: record!.messageId, error: expect.stringMatching(/ECONNREFUSED/) },
    ]);
    expect((error as BackoffError).cause).toBeDefined();
  });

  it('stops when its signal is aborted, naming the records and the cause', async () => {
    const queue = await createQueue(sqs, 'backoff-aborted');
    const [record] = await receiveAsRecords(sqs, queue, [{ body: 'late' }]);
    const error = await createBackoff(sqs, { baseDelayS: 600, maxDelayS: 600 })
      .apply([{ record: record! }], AbortSignal.abort())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackoffError);
    expect((error as BackoffError).failures.map((f) => f.messageId)).toEqual([record!.messageId]);
    expect(((error as BackoffError).cause as Error).name).toBe('AbortError');
  });

  it('keeps the code and message SQS gave for each refused record', async () => {
    const queue = await createQueue(sqs, 'backoff-refused');
    const [record] = await receiveAsRecords(sqs, queue, [{ body: 'stale' }]);
    record!.receiptHandle = 'not-a-receipt-handle';
    const error = await createBackoff(sqs, { baseDelayS: 1, maxDelayS: 1 })
      .apply([{ record: record! }], AbortSignal.timeout(10_000))
      .catch((e: unknown) => e);
    expect((error as BackoffError).failures).toEqual([
      { messageId: record!.messageId, error: expect.stringMatching(/^\w+: \S/) },
    ]);
  });
});
