// How long the messages a loop run has in hand stay hidden: renewed while it lives, released when it ends.
import { ChangeMessageVisibilityBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { SEND_MAX_ENTRIES, within } from './sqs-call';
import type { RedriveOptions } from './types';

const DEFAULT_VISIBILITY_TIMEOUT_S = 60;

/**
 * Sets the visibility timeout of messages in hand, 10 per call, best effort: a batch that fails (or does not answer
 * within `callTimeoutMs`) is skipped, and so is an entry SQS lists as failed (those messages reappear when their
 * current timeout runs out); the others are still changed. Returns how many were not changed.
 */
export async function changeVisibility(
  sqs: SQSClient,
  queueUrl: string,
  receiptHandles: Iterable<string>,
  timeoutS: number,
  callTimeoutMs: number,
): Promise<number> {
  const handles = [...new Set(receiptHandles)];
  let unchanged = 0;
  for (let first = 0; first < handles.length; first += SEND_MAX_ENTRIES) {
    const entries = handles
      .slice(first, first + SEND_MAX_ENTRIES)
      .map((handle, index) => ({ Id: String(index), ReceiptHandle: handle, VisibilityTimeout: timeoutS }));
    const command = new ChangeMessageVisibilityBatchCommand({ QueueUrl: queueUrl, Entries: entries });
    try {
      const response = await within('ChangeMessageVisibilityBatch', callTimeoutMs, (abortSignal) =>
        sqs.send(command, { abortSignal }),
      );
      unchanged += response.Failed?.length ?? 0;
    } catch {
      unchanged += entries.length;
    }
  }
  return unchanged;
}

export function visibilityOf(options: RedriveOptions): number {
  return options.visibilityTimeoutS ?? DEFAULT_VISIBILITY_TIMEOUT_S;
}

/**
 * Keeps what the run holds (and the batch in hand, if a send is slow) hidden while the run lives: renews the
 * visibility timeout at half its length. Held messages that reappeared would look like new receives with nothing to
 * move and end the run early. Returns the function that stops it.
 */
export function keepHidden(
  sqs: SQSClient,
  queueUrl: string,
  timeoutS: number,
  callTimeoutMs: number,
  receiptHandles: () => Iterable<string>,
): () => Promise<void> {
  let renewing: Promise<void> | undefined;
  const timer = setInterval(() => {
    // A renewal still waiting on SQS is not queued behind: at most one runs, and stopping waits for that one only.
    renewing ??= changeVisibility(sqs, queueUrl, receiptHandles(), timeoutS, callTimeoutMs).then(() => {
      renewing = undefined;
    });
  }, timeoutS * 500);
  return async () => {
    clearInterval(timer);
    await renewing;
  };
}
