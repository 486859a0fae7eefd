// What the run reads at its start: the source's ARN and count, and the start on SQS's clock.
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { callTimeoutOf, within } from './sqs-call';
import type { RedriveOptions } from './types';

// Only when SQS's answer has no Date header: NTP keeps clocks well within this, and a clock further behind SQS shows
// up as arrivedLater, not as a silent loss.
const DEFAULT_CLOCK_SKEW_MS = 5_000;

// SQS's Date header further than this from our clock is not believed (a proxy or a broken clock on either side).
const CLOCK_DISAGREEMENT_MS = 60_000;

export async function queueAttributes(sqs: SQSClient, url: string, options: RedriveOptions) {
  const command = new GetQueueAttributesCommand({
    QueueUrl: url,
    AttributeNames: ['QueueArn', 'ApproximateNumberOfMessages'],
  });
  let serverTime: number | undefined;
  // SQS's clock (the one that stamps SentTimestamp), rounded down to the second, from the Date header of its answer.
  command.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      const date = Date.parse((result.response as { headers?: Record<string, string> }).headers?.date ?? '');
      if (!Number.isNaN(date)) serverTime = date;
      return result;
    },
    { step: 'deserialize' },
  );
  const response = await within('GetQueueAttributes', callTimeoutOf(options), (abortSignal) =>
    sqs.send(command, { abortSignal }),
  );
  return {
    arn: response.Attributes?.QueueArn ?? '',
    visible: Number(response.Attributes?.ApproximateNumberOfMessages ?? 0),
    serverTime,
  };
}

/**
 * The SentTimestamp after which a message was sent after the run started. SQS answered our first request within the
 * second its Date header names, so whatever was there before was stamped before that second ended; our own clock
 * (with an allowance for skew) only when the header is missing.
 */
export function cutoffOf(options: RedriveOptions, startedAt: number, serverTime: number | undefined): number {
  if (options.clockOffsetMs !== undefined) return startedAt + options.clockOffsetMs;
  if (serverTime === undefined) return startedAt + DEFAULT_CLOCK_SKEW_MS;
  if (Math.abs(serverTime - startedAt) > CLOCK_DISAGREEMENT_MS) {
    options.onWarning?.(
      `SQS's clock (Date header ${new Date(serverTime).toISOString()}) is ${Math.round((serverTime - startedAt) / 1000)} s ` +
        `from this machine's: the start is taken from this machine's clock (± ${DEFAULT_CLOCK_SKEW_MS / 1000} s); check NTP or any proxy in between`,
    );
    return startedAt + DEFAULT_CLOCK_SKEW_MS;
  }
  return serverTime + 1_000;
}
