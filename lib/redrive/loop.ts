// The receive-send-delete method: moves what the source held at the start, each message once.
import { DeleteMessageBatchCommand, type Message, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { createQueueUrlResolver } from '../config/queue-url';
import { describe, RedriveError } from './errors';
import { REDRIVE_MARKER } from './marker';
import { eligibleOf, fail, type LoopRun, summaryOf } from './run';
import { route, sendAll } from './send';
import { callTimeoutOf, SEND_MAX_ENTRIES, within } from './sqs-call';
import type { RedriveOptions } from './types';
import { changeVisibility, keepHidden, visibilityOf } from './visibility';

// Receives in a row that find nothing to move before the loop ends anyway (poison may keep arriving for ever).
const IDLE_RECEIVES_MAX = 10;

/** Deletes a copy SQS handed out again of a message this run already moved (at-least-once delivery), best effort. */
async function deleteMovedAlready(sqs: SQSClient, run: LoopRun, messages: Message[]): Promise<void> {
  if (messages.length === 0) return;
  const command = new DeleteMessageBatchCommand({
    QueueUrl: run.options.from,
    Entries: messages.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle })),
  });
  await within('DeleteMessageBatch', callTimeoutOf(run.options), (abortSignal) =>
    sqs.send(command, { abortSignal }),
  ).catch(() => undefined);
}

async function receive(sqs: SQSClient, run: LoopRun, wanted: number): Promise<Message[]> {
  const { options } = run;
  const request = async (wait: number) => {
    const command = new ReceiveMessageCommand({
      QueueUrl: options.from,
      MaxNumberOfMessages: wanted,
      VisibilityTimeout: visibilityOf(options),
      WaitTimeSeconds: wait,
      MessageAttributeNames: ['All'],
      // local-aws-sqs only reads the older AttributeNames; SQS accepts both.
      AttributeNames: ['All'],
      MessageSystemAttributeNames: ['All'],
    });
    const response = await within('ReceiveMessage', callTimeoutOf(options, wait), (abortSignal) =>
      sqs.send(command, { abortSignal }),
    );
    return response.Messages ?? [];
  };
  const emptyWait = options.emptyWaitS ?? 1;
  try {
    const messages = await request(0);
    if (messages.length > 0 || emptyWait === 0 || options.signal?.aborted) return messages;
    return await request(emptyWait);
  } catch (error) {
    throw new RedriveError(
      `cannot receive from ${options.from} after moving ${run.moved} message(s): ${describe(error)}; nothing was lost, run it again`,
      { cause: error },
    );
  }
}

/** Deletes from the source what was sent: only then is a message moved. */
async function deleteSent(sqs: SQSClient, run: LoopRun, sent: Message[]): Promise<void> {
  if (sent.length === 0) return;
  const notDeleted = 'sent, but not deleted from the source: it will be moved again by the next run';
  try {
    const command = new DeleteMessageBatchCommand({
      QueueUrl: run.options.from,
      Entries: sent.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle })),
    });
    const response = await within('DeleteMessageBatch', callTimeoutOf(run.options), (abortSignal) =>
      sqs.send(command, { abortSignal }),
    );
    const failedIndexes = new Set((response.Failed ?? []).map((failed) => Number(failed.Id)));
    for (const failed of response.Failed ?? []) {
      fail(run, sent[Number(failed.Id)], `${notDeleted} (${failed.Code}: ${failed.Message})`);
    }
    sent.forEach((message, index) => {
      if (!failedIndexes.has(index) && message.MessageId) run.movedIds.add(message.MessageId);
    });
    run.moved += sent.length - failedIndexes.size;
  } catch (error) {
    for (const message of sent) fail(run, message, `${notDeleted} (${describe(error)})`);
  }
}

/** Receipt handles of what the run holds, but those of messages it deleted (their handles are gone). */
function heldHandles(run: LoopRun): string[] {
  return [...run.held, ...run.inHand].filter(([id]) => !run.movedIds.has(id)).map(([, handle]) => handle);
}

/**
 * Receive, send, then delete, until a receive finds nothing, --max is reached, or IDLE_RECEIVES_MAX receives in a row
 * found only messages this run leaves (came back, arrived later, failed already): each is held hidden (renewed) until
 * the run ends, so the visible ones dwindle unless new ones keep arriving; the run ends then too, incomplete. Each
 * message there at the start is moved or failed at most once, so receives that move something are bounded too.
 */
export async function loop(sqs: SQSClient, options: RedriveOptions, total: number, dlqArn: string, cutoff: number) {
  options.onStart?.({ method: 'loop', total });
  const run: LoopRun = {
    options,
    dlqArn,
    cutoff,
    moved: 0,
    failures: [],
    failedIds: new Set(),
    destinations: {},
    sentIds: new Set(),
    returnedIds: new Set(),
    laterIds: new Set(),
    held: new Map(),
    inHand: new Map(),
    movedIds: new Set(),
    failedGroups: new Set(),
    unmarked: new Set(),
  };
  const resolveUrl = createQueueUrlResolver(sqs);
  const stopKeeping = keepHidden(sqs, options.from, visibilityOf(options), callTimeoutOf(options), () =>
    heldHandles(run),
  );
  let idle = 0;
  try {
    for (;;) {
      const done = run.moved + run.failures.length;
      if (options.signal?.aborted || (options.max !== undefined && done >= options.max)) break;
      const wanted = Math.min(SEND_MAX_ENTRIES, (options.max ?? Number.POSITIVE_INFINITY) - done);
      const messages = await receive(sqs, run, wanted);
      if (messages.length === 0) break;
      for (const message of messages) run.inHand.set(message.MessageId ?? '', message.ReceiptHandle ?? '');
      const { eligible, movedAlready } = eligibleOf(run, messages);
      await deleteMovedAlready(sqs, run, movedAlready);
      idle = eligible.length === 0 ? idle + 1 : 0;
      if (idle >= IDLE_RECEIVES_MAX) break;
      if (idle === 0) await deleteSent(sqs, run, await sendAll(sqs, run, await route(run, eligible, resolveUrl)));
      run.inHand.clear();
      const progress = run.moved + run.failures.length;
      options.onProgress?.({ moved: run.moved, failed: run.failures.length, total: Math.max(total, progress) });
    }
  } finally {
    await stopKeeping();
    const hidden = await changeVisibility(sqs, options.from, heldHandles(run), 0, callTimeoutOf(options));
    if (hidden > 0) {
      options.onWarning?.(
        `${hidden} message(s) this run left could not be made visible again at once: they reappear in ${options.from} ` +
          `within ${visibilityOf(options)} s`,
      );
    }
  }
  const unmarked = [...run.unmarked].filter((id) => run.movedIds.has(id)).length;
  if (unmarked > 0) {
    options.onWarning?.(
      `${unmarked} message(s) had no room for ${REDRIVE_MARKER} (10 attributes of their own, or at the queue's size limit): in the ` +
        'default ledger mode they reach every endpoint again (with the same Idempotency-Key)',
    );
  }
  // Read at the end: a Ctrl-C during the last receive cut its wait short, so an empty answer proves nothing.
  const interrupted = options.signal?.aborted ?? false;
  return summaryOf(run, interrupted, idle < IDLE_RECEIVES_MAX && !interrupted);
}
