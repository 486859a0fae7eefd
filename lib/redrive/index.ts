import type { SQSClient } from '@aws-sdk/client-sqs';
import { describe, RedriveError } from './errors';
import { loop } from './loop';
import { REDRIVE_MARKER } from './marker';
import { moveTask } from './move-task';
import { cutoffOf, queueAttributes } from './start';
import type { RedriveOptions, RedriveSummary } from './types';

export { RedriveError, SqsCallTimeoutError } from './errors';
export { REDRIVE_MARKER } from './marker';
export { sourceArnOf } from './source';
export type {
  RedriveFailure,
  RedriveMethod,
  RedriveOptions,
  RedriveProgress,
  RedriveSummary,
} from './types';
export { changeVisibility, keepHidden } from './visibility';

/**
 * Moves messages from a dead-letter or quarantine queue back for another attempt: receives, sends to the destination
 * (or each message's own source queue) marked as redriven, and only then deletes. SQS's StartMessageMoveTask only when
 * asked (`method: 'move-task'`, with a destination and without a limit; the source must be some queue's DLQ).
 */
export async function redrive(sqs: SQSClient, options: RedriveOptions): Promise<RedriveSummary> {
  const startedAt = Date.now();
  if (options.to && options.to === options.from) {
    throw new RedriveError(`--to is the same queue as --from (${options.from}): pass a different destination`);
  }
  if (options.max !== undefined && (!Number.isInteger(options.max) || options.max < 1)) {
    throw new RedriveError(`--max must be a whole number of at least 1, not ${options.max}`);
  }
  let source: Awaited<ReturnType<typeof queueAttributes>>;
  try {
    source = await queueAttributes(sqs, options.from, options);
  } catch (error) {
    throw new RedriveError(
      `cannot read the source queue ${options.from}: ${describe(error)}; check --from and AWS settings`,
      {
        cause: error,
      },
    );
  }
  // Approximate, and it may lag by a minute: for progress (and the move task's) only, never a bound on the loop.
  const total = options.max === undefined ? source.visible : Math.min(options.max, source.visible);
  const method = options.method ?? 'auto';
  if (method === 'move-task' && (!options.to || options.max !== undefined)) {
    throw new RedriveError('a move task needs --to and cannot honour --max: drop --max or use the loop');
  }

  let result: Omit<RedriveSummary, 'remaining' | 'durationMs'> | undefined;
  // Only when asked: a move task cannot add the redrive marker, so the function would take what it moves for first
  // deliveries and skip the ledger (SQS gives moved messages a new id and a receive count of 1).
  if (method === 'move-task' && options.to) {
    options.onWarning?.(
      `a move task cannot mark what it moves (${REDRIVE_MARKER}): messages SQS dead-lettered reach every endpoint ` +
        'again unless DELIVERY_LEDGER_MODE is every-delivery; the loop (--method loop, the default) marks them',
    );
    let destinationArn: string;
    try {
      destinationArn = (await queueAttributes(sqs, options.to, options)).arn;
    } catch (error) {
      throw new RedriveError(`cannot read the destination queue ${options.to}: ${describe(error)}; check --to`, {
        cause: error,
      });
    }
    try {
      result = await moveTask(sqs, options, source, destinationArn, total);
    } catch (error) {
      throw new RedriveError(`the move task was refused: ${describe(error)}; use --method loop`, { cause: error });
    }
  }
  result ??= await loop(sqs, options, total, source.arn, cutoffOf(options, startedAt, source.serverTime));
  const remaining = (await queueAttributes(sqs, options.from, options).catch(() => ({ visible: Number.NaN }))).visible;
  return { ...result, remaining, durationMs: Date.now() - startedAt };
}
