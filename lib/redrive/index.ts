import type { SQSClient } from '@aws-sdk/client-sqs';
import { describe, RedriveError } from './errors';
import { loop } from './loop';
import { moveTask } from './move-task';
import { cutoffOf, queueAttributes } from './start';
import type { RedriveOptions, RedriveSummary } from './types';

export { RedriveError, SqsCallTimeoutError } from './errors';
export { sourceArnOf } from './source';
export type {
  RedriveFailure,
  RedriveMethod,
  RedriveOptions,
  RedriveProgress,
  RedriveSummary,
} from './types';

/**
 * Moves messages from a dead-letter or quarantine queue back for another attempt. Uses SQS's StartMessageMoveTask
 * when a destination is given without a limit and the server accepts it (the source must be some queue's DLQ);
 * otherwise receives, sends to the destination (or each message's own source queue), and only then deletes.
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
  if (method !== 'loop' && options.to && options.max === undefined) {
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
      // Not a DLQ of any queue, or a server without move tasks: the loop does the same job.
      if (method === 'move-task')
        throw new RedriveError(`the move task was refused: ${describe(error)}`, { cause: error });
    }
  }
  result ??= await loop(sqs, options, total, source.arn, cutoffOf(options, startedAt, source.serverTime));
  const remaining = (await queueAttributes(sqs, options.from, options).catch(() => ({ visible: Number.NaN }))).visible;
  return { ...result, remaining, durationMs: Date.now() - startedAt };
}
