import {
  CancelMessageMoveTaskCommand,
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ListMessageMoveTasksCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SQSClient,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs';
import { batchEntries, QUARANTINE_ATTRIBUTES } from './quarantine';
import { createQueueUrlResolver } from './queue-url';

export type RedriveMethod = 'move-task' | 'loop';

export interface RedriveOptions {
  /** The dead-letter / quarantine queue to empty. */
  from: string;
  /** Where every message goes; without it each goes back to the queue it came from (see README). */
  to?: string;
  /** Move at most this many messages (forces the receive-send-delete loop: move tasks cannot be limited). */
  max?: number;
  /** 'auto' (default): a move task when --to is given without --max and the server accepts it, the loop otherwise. */
  method?: RedriveMethod | 'auto';
  /** Loop only: how long a received message stays hidden; after an interruption it is visible again this much later. */
  visibilityTimeoutS?: number;
  /** Loop only: long-poll this many seconds before concluding the queue is empty (short polls can miss messages). */
  emptyWaitS?: number;
  /** Move task only: how often its progress is read. */
  pollIntervalMs?: number;
  /** Stops the run: the loop finishes the batch in hand (send, then delete), a move task is cancelled. */
  signal?: AbortSignal;
  onStart?: (info: { method: RedriveMethod; total: number }) => void;
  onProgress?: (progress: RedriveProgress) => void;
}

export interface RedriveProgress {
  moved: number;
  failed: number;
  total: number;
}

export interface RedriveFailure {
  messageId: string;
  error: string;
}

export interface RedriveSummary {
  method: RedriveMethod;
  /** Messages now in their destination and deleted from the source. */
  moved: number;
  /** Messages that could not be moved; they stay in (or return to) the source queue. */
  failed: number;
  /**
   * Loop only: messages this run moved that came back to the source queue during the run (quarantined or
   * dead-lettered again: still poison). They are left there, not moved again.
   */
  returned: number;
  failures: RedriveFailure[];
  /** Moved messages per destination queue URL (loop) or destination ARN (move task). */
  destinations: Record<string, number>;
  interrupted: boolean;
  /** ApproximateNumberOfMessages of the source after the run. */
  remaining: number;
  /** Why a move task ended without moving everything, as SQS reports it. */
  taskFailureReason?: string;
  durationMs: number;
}

/** The redrive could not start or a move task failed; the message says what to check. */
export class RedriveError extends Error {
  override readonly name = 'RedriveError';
}

const DEFAULT_VISIBILITY_TIMEOUT_S = 60;
const SEND_MAX_ENTRIES = 10;

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

async function queueAttributes(sqs: SQSClient, url: string, signal?: AbortSignal) {
  const response = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn', 'ApproximateNumberOfMessages'] }),
    { abortSignal: signal },
  );
  return {
    arn: response.Attributes?.QueueArn ?? '',
    visible: Number(response.Attributes?.ApproximateNumberOfMessages ?? 0),
  };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Where a dead-lettered or quarantined message came from. SQS's own DeadLetterQueueSourceArn first: producers can set
 * message attributes, so `quarantine.*` is trusted only on a message SQS did not dead-letter (the handler sent it and
 * replaced whatever `quarantine.*` the producer had set), and only when it names a queue of the DLQ's own account and
 * region (`dlqArn`).
 */
export function sourceArnOf(message: Message, dlqArn?: string): string | undefined {
  const dead = message.Attributes?.DeadLetterQueueSourceArn;
  if (dead) return dead;
  const ours = quarantineReason(message, 'sourceQueue');
  if (ours === undefined || dlqArn === undefined) return ours;
  return sameAccountAndRegion(ours, dlqArn) ? ours : undefined;
}

/** arn:partition:sqs:region:account of an SQS queue ARN. */
function arnScope(arn: string): string | undefined {
  const parts = arn.split(':');
  return parts.length === 6 && parts[0] === 'arn' && parts[2] === 'sqs' ? parts.slice(0, 5).join(':') : undefined;
}

function sameAccountAndRegion(arn: string, other: string): boolean {
  const scope = arnScope(arn);
  return scope !== undefined && scope === arnScope(other);
}

/** One of the reasons the handler recorded on a quarantined message: its own attribute, or a key of the folded one. */
function quarantineReason(message: Message, key: 'sourceQueue' | 'messageId'): string | undefined {
  const attributes = message.MessageAttributes ?? {};
  const direct = attributes[QUARANTINE_ATTRIBUTES[key]]?.StringValue;
  if (direct) return direct;
  try {
    const combined: unknown = JSON.parse(attributes[QUARANTINE_ATTRIBUTES.combined]?.StringValue ?? 'null');
    if (typeof combined === 'object' && combined !== null && key in combined) {
      const value = (combined as Record<string, unknown>)[key];
      return typeof value === 'string' ? value : undefined;
    }
  } catch {
    // Not ours.
  }
  return undefined;
}

async function moveTask(
  sqs: SQSClient,
  options: RedriveOptions,
  source: { arn: string },
  destinationArn: string,
  total: number,
): Promise<Omit<RedriveSummary, 'remaining' | 'durationMs'>> {
  const started = await sqs.send(
    new StartMessageMoveTaskCommand({ SourceArn: source.arn, DestinationArn: destinationArn }),
  );
  options.onStart?.({ method: 'move-task', total });
  const poll = options.pollIntervalMs ?? 1_000;
  let cancelled = false;
  let unseen = 0;
  for (;;) {
    if (options.signal?.aborted && !cancelled && started.TaskHandle) {
      cancelled = true;
      try {
        await sqs.send(new CancelMessageMoveTaskCommand({ TaskHandle: started.TaskHandle }));
      } catch {
        // The task finished in the meantime: nothing to cancel.
      }
    }
    const list = await sqs.send(new ListMessageMoveTasksCommand({ SourceArn: source.arn, MaxResults: 1 }));
    const task = list.Results?.[0];
    if (!task && ++unseen > 10) {
      throw new RedriveError(
        `the move task on ${source.arn} does not show in ListMessageMoveTasks: check the SQS console`,
      );
    }
    const moved = task?.ApproximateNumberOfMessagesMoved ?? 0;
    options.onProgress?.({ moved, failed: 0, total: task?.ApproximateNumberOfMessagesToMove ?? total });
    const status = task?.Status;
    if (status && status !== 'RUNNING' && status !== 'CANCELLING') {
      const summary: Omit<RedriveSummary, 'remaining' | 'durationMs'> = {
        method: 'move-task',
        moved,
        failed: 0,
        returned: 0,
        failures: [],
        destinations: moved > 0 ? { [destinationArn]: moved } : {},
        interrupted: status === 'CANCELLED',
      };
      if (status === 'FAILED') summary.taskFailureReason = task?.FailureReason ?? 'unknown';
      return summary;
    }
    await sleep(poll, cancelled ? undefined : options.signal);
  }
}

function toEntry(message: Message, id: string, fifo: boolean): SendMessageBatchRequestEntry {
  const entry: SendMessageBatchRequestEntry = { Id: id, MessageBody: message.Body ?? '' };
  const attributes: Record<string, MessageAttributeValue> = {};
  for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
    const copy: MessageAttributeValue = { DataType: value.DataType };
    if (value.StringValue !== undefined) copy.StringValue = value.StringValue;
    if (value.BinaryValue !== undefined) copy.BinaryValue = value.BinaryValue;
    attributes[name] = copy;
  }
  if (Object.keys(attributes).length > 0) entry.MessageAttributes = attributes;
  const trace = message.Attributes?.AWSTraceHeader;
  if (trace) entry.MessageSystemAttributes = { AWSTraceHeader: { DataType: 'String', StringValue: trace } };
  if (fifo) {
    entry.MessageGroupId = message.Attributes?.MessageGroupId ?? message.MessageId;
    entry.MessageDeduplicationId = message.Attributes?.MessageDeduplicationId ?? message.MessageId;
  }
  return entry;
}

/** Makes messages received but not moved visible again at once (best effort: else they are after the timeout). */
async function release(sqs: SQSClient, queueUrl: string, messages: Message[]): Promise<void> {
  const entries = messages.map((message, index) => ({
    Id: String(index),
    ReceiptHandle: message.ReceiptHandle,
    VisibilityTimeout: 0,
  }));
  await sqs.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: queueUrl, Entries: entries })).catch(() => {});
}

async function loop(
  sqs: SQSClient,
  options: RedriveOptions,
  total: number,
  dlqArn: string,
): Promise<Omit<RedriveSummary, 'remaining' | 'durationMs'>> {
  options.onStart?.({ method: 'loop', total });
  const resolveUrl = createQueueUrlResolver(sqs);
  const visibility = options.visibilityTimeoutS ?? DEFAULT_VISIBILITY_TIMEOUT_S;
  const emptyWait = options.emptyWaitS ?? 1;
  const failures: RedriveFailure[] = [];
  const failedIds = new Set<string>();
  const destinations: Record<string, number> = {};
  let moved = 0;
  let interrupted = false;
  // Ids this run gave the messages it sent: one that comes back (SQS keeps the id when dead-lettering; the handler
  // records it as quarantine.messageId) is still poison, and moving it again would never end.
  const sentIds = new Set<string>();
  const returnedIds = new Set<string>();
  const cameBack = (message: Message) => {
    const id = message.MessageId ?? '';
    if (!sentIds.has(id) && !sentIds.has(quarantineReason(message, 'messageId') ?? '')) return false;
    returnedIds.add(id);
    return true;
  };
  const report = () => options.onProgress?.({ moved, failed: failures.length, total });
  const fail = (messageId: string | undefined, error: string) => {
    failedIds.add(messageId ?? '');
    failures.push({ messageId: messageId ?? '?', error });
  };

  for (;;) {
    if (options.signal?.aborted) {
      interrupted = true;
      break;
    }
    // At most what was there at the start (and --max): poison arriving during the run waits for the next one. Past
    // that, receives only look for copies that came back, to report them.
    const capped = moved + failures.length >= total;
    if (capped && (options.max !== undefined || total === 0)) break;
    const wanted = capped ? SEND_MAX_ENTRIES : Math.min(SEND_MAX_ENTRIES, total - moved - failures.length);
    const receive = (wait: number) =>
      sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: options.from,
          MaxNumberOfMessages: wanted,
          VisibilityTimeout: visibility,
          WaitTimeSeconds: wait,
          MessageAttributeNames: ['All'],
          // local-aws-sqs only reads the older AttributeNames; SQS accepts both.
          AttributeNames: ['All'],
          MessageSystemAttributeNames: ['All'],
        }),
      );
    let messages: Message[];
    try {
      messages = (await receive(0)).Messages ?? [];
      if (messages.length === 0 && emptyWait > 0 && !options.signal?.aborted)
        messages = (await receive(emptyWait)).Messages ?? [];
    } catch (error) {
      throw new RedriveError(
        `cannot receive from ${options.from} after moving ${moved} message(s): ${describe(error)}; nothing was lost, run it again`,
        { cause: error },
      );
    }
    // A message that already failed in this run is back (its visibility timeout ran out): leave it be, and stop
    // when nothing else is left. Received, it stays hidden, so originals behind it come in the next receive.
    if (messages.length === 0) break;
    const fresh = messages.filter((message) => !failedIds.has(message.MessageId ?? '') && !cameBack(message));
    if (fresh.length === 0) continue;
    if (capped) {
      await release(sqs, options.from, fresh);
      break;
    }

    // Group by destination; a message with no known origin stays where it is (visible again after the timeout).
    const byDestination = new Map<string, Message[]>();
    for (const message of fresh) {
      let url = options.to;
      if (!url) {
        const arn = sourceArnOf(message, dlqArn);
        if (arn) {
          try {
            url = await resolveUrl(arn);
          } catch (error) {
            fail(message.MessageId, describe(error));
            continue;
          }
        }
      }
      if (!url) {
        fail(
          message.MessageId,
          'no source queue recorded on the message (no quarantine.sourceQueue or DeadLetterQueueSourceArn): pass --to',
        );
        continue;
      }
      const queued = byDestination.get(url);
      if (queued) queued.push(message);
      else byDestination.set(url, [message]);
    }

    // Send first, delete only what was sent: an interruption in between leaves a duplicate, never a loss.
    const sent: Message[] = [];
    for (const [url, group] of byDestination) {
      const fifo = url.endsWith('.fifo');
      const prepared = group.map((message, index) => ({ message, entry: toEntry(message, String(index), fifo) }));
      for (const batch of batchEntries(prepared)) {
        try {
          const response = await sqs.send(
            new SendMessageBatchCommand({ QueueUrl: url, Entries: batch.map((p) => p.entry) }),
          );
          const ok = new Set((response.Successful ?? []).map((s) => s.Id));
          for (const success of response.Successful ?? []) if (success.MessageId) sentIds.add(success.MessageId);
          for (const p of batch) {
            if (ok.has(p.entry.Id)) {
              sent.push(p.message);
              destinations[url] = (destinations[url] ?? 0) + 1;
            }
          }
          for (const failed of response.Failed ?? []) {
            const p = batch.find((candidate) => candidate.entry.Id === failed.Id);
            fail(p?.message.MessageId, `${failed.Code}: ${failed.Message}`);
          }
        } catch (error) {
          for (const p of batch) fail(p.message.MessageId, describe(error));
        }
      }
    }
    if (sent.length > 0) {
      const notDeleted = 'sent, but not deleted from the source: it will be moved again by the next run';
      try {
        const response = await sqs.send(
          new DeleteMessageBatchCommand({
            QueueUrl: options.from,
            Entries: sent.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle })),
          }),
        );
        for (const failed of response.Failed ?? []) {
          const message = sent[Number(failed.Id)];
          fail(message?.MessageId, `${notDeleted} (${failed.Code}: ${failed.Message})`);
        }
        moved += sent.length - (response.Failed?.length ?? 0);
      } catch (error) {
        for (const message of sent) fail(message.MessageId, `${notDeleted} (${describe(error)})`);
      }
    }
    report();
  }
  return {
    method: 'loop',
    moved,
    failed: failures.length,
    returned: returnedIds.size,
    failures,
    destinations,
    interrupted,
  };
}

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
  let source: { arn: string; visible: number };
  try {
    source = await queueAttributes(sqs, options.from);
  } catch (error) {
    throw new RedriveError(
      `cannot read the source queue ${options.from}: ${describe(error)}; check --from and AWS settings`,
      {
        cause: error,
      },
    );
  }
  const total = options.max === undefined ? source.visible : Math.min(options.max, source.visible);
  const method = options.method ?? 'auto';
  if (method === 'move-task' && (!options.to || options.max !== undefined)) {
    throw new RedriveError('a move task needs --to and cannot honour --max: drop --max or use the loop');
  }

  let result: Omit<RedriveSummary, 'remaining' | 'durationMs'> | undefined;
  if (method !== 'loop' && options.to && options.max === undefined) {
    let destinationArn: string;
    try {
      destinationArn = (await queueAttributes(sqs, options.to)).arn;
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
  result ??= await loop(sqs, options, total, source.arn);
  const remaining = (await queueAttributes(sqs, options.from).catch(() => ({ visible: Number.NaN }))).visible;
  return { ...result, remaining, durationMs: Date.now() - startedAt };
}
