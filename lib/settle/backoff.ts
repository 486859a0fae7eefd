import { ChangeMessageVisibilityBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { createQueueUrlResolver } from '../config/queue-url';
import { type MessageFailure, sampleFailures } from '../errors';
import type { Backoff, BackoffItem } from '../types';

/** SQS's limit for a visibility timeout (12 h). */
export const SQS_MAX_VISIBILITY_S = 43_200;
/**
 * SQS counts the 12 h from the ReceiveMessage, which happened before this invocation: up to the maximum batching
 * window (300 s) plus the maximum function timeout (900 s) earlier. Staying 1200 s under keeps the call valid.
 */
export const VISIBILITY_CEILING_S = SQS_MAX_VISIBILITY_S - 1_200;
const MAX_BATCH = 10;

export interface BackoffPolicy {
  /** RETRY_BASE_DELAY_S: the delay after the first failed receive. */
  baseDelayS: number;
  /** RETRY_MAX_DELAY_S: the exponential delay never exceeds this. */
  maxDelayS: number;
}

/** Some visibility changes were refused; those records come back after the queue's own visibility timeout. */
export class BackoffError extends Error {
  override readonly name = 'BackoffError';
  constructor(
    /** The message ids whose visibility was not changed, with the reason SQS or the network gave. */
    readonly failures: MessageFailure[],
    options?: { cause?: unknown },
  ) {
    super(
      `could not delay ${failures.length} failed record(s) (${sampleFailures(failures)}); they return after the queue's visibility ` +
        'timeout instead: check the function role allows sqs:ChangeMessageVisibility on the source queue',
      options,
    );
  }
}

/**
 * Seconds a failed record stays invisible: d = base × 2^(receiveCount−1) capped at maxDelayS, jittered uniformly in
 * [d/2, d] and rounded up; the endpoint's Retry-After wins when it is longer. Never more than maxDelayS (whatever
 * the endpoint asked) nor `ceilingS`.
 * `random` returns a number in [0, 1), like Math.random.
 */
export function backoffDelayS(
  receiveCount: number,
  policy: BackoffPolicy,
  retryAfterS?: number,
  random: () => number = Math.random,
  ceilingS: number = SQS_MAX_VISIBILITY_S,
): number {
  const attempt = Number.isFinite(receiveCount) && receiveCount >= 1 ? Math.floor(receiveCount) : 1;
  const cap = Math.min(policy.maxDelayS, ceilingS);
  // 2 ** large is Infinity, which min() folds into the cap.
  const delay = Math.min(cap, policy.baseDelayS * 2 ** (attempt - 1));
  const jittered = Math.min(delay, Math.ceil(delay / 2 + random() * (delay / 2)));
  const asked =
    retryAfterS !== undefined && Number.isFinite(retryAfterS) && retryAfterS > 0 ? Math.ceil(retryAfterS) : 0;
  // An endpoint's Retry-After never outlasts RETRY_MAX_DELAY_S: a day-long one would let SQS expire the message.
  return Math.min(Math.max(jittered, asked), cap);
}

function chunk<T>(items: T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

export interface BackoffOptions extends BackoffPolicy {
  random?: () => number;
}

/** Delays records reported failed with ChangeMessageVisibilityBatch on their own source queue (10 per call). */
export function createBackoff(sqs: SQSClient, options: BackoffOptions): Backoff {
  const queueUrl = createQueueUrlResolver(sqs);
  const random = options.random ?? Math.random;

  return {
    async apply(items: BackoffItem[], signal: AbortSignal): Promise<void> {
      const byQueue = new Map<string, BackoffItem[]>();
      for (const item of items) {
        const arn = item.record.eventSourceARN;
        const queued = byQueue.get(arn);
        if (queued) queued.push(item);
        else byQueue.set(arn, [item]);
      }
      const failures: { messageId: string; error: string }[] = [];
      let cause: unknown;
      const calls = [...byQueue].flatMap(([arn, queueItems]) =>
        chunk(queueItems, MAX_BATCH).map(async (batch) => {
          try {
            const response = await sqs.send(
              new ChangeMessageVisibilityBatchCommand({
                QueueUrl: await queueUrl(arn),
                Entries: batch.map((item, index) => ({
                  Id: String(index),
                  ReceiptHandle: item.record.receiptHandle,
                  VisibilityTimeout: backoffDelayS(
                    Number(item.record.attributes.ApproximateReceiveCount),
                    options,
                    item.retryAfterS,
                    random,
                    VISIBILITY_CEILING_S,
                  ),
                })),
              }),
              { abortSignal: signal },
            );
            for (const failed of response.Failed ?? []) {
              const item = batch[Number(failed.Id)];
              if (item) failures.push({ messageId: item.record.messageId, error: `${failed.Code}: ${failed.Message}` });
            }
          } catch (error) {
            cause ??= error;
            for (const item of batch) failures.push({ messageId: item.record.messageId, error: describe(error) });
          }
        }),
      );
      await Promise.all(calls);
      if (failures.length > 0) throw new BackoffError(failures, { cause });
    },
  };
}
