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
  /**
   * Loop only: SQS's clock minus ours, when known exactly (a local server on this machine: 0). A message is there at
   * the start when SQS stamped it (SentTimestamp) no later than the start on SQS's clock; later ones wait for the
   * next run. By default SQS's clock is read from the Date header of its first answer, to the second.
   */
  clockOffsetMs?: number;
  /** Told of a doubt the run worked around (e.g. SQS's clock far from ours); the CLI prints it. */
  onWarning?: (warning: string) => void;
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
  /** Loop only: messages sent to the source after the run started; they were left there for the next run. */
  arrivedLater: number;
  failures: RedriveFailure[];
  /** Moved messages per destination queue URL (loop) or destination ARN (move task). */
  destinations: Record<string, number>;
  interrupted: boolean;
  /**
   * False when the loop stopped on its idle rule (receives in a row with nothing to move) rather than on an empty
   * receive, --max or an interruption: messages there at the start may remain; run it again.
   */
  complete: boolean;
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
// Only when SQS's answer has no Date header: NTP keeps clocks well within this, and a clock further behind SQS shows
// up as arrivedLater, not as a silent loss.
const DEFAULT_CLOCK_SKEW_MS = 5_000;
// SQS's Date header further than this from our clock is not believed (a proxy or a broken clock on either side).
const CLOCK_DISAGREEMENT_MS = 60_000;
// Receives in a row that find nothing to move before the loop ends anyway (poison may keep arriving for ever).
const IDLE_RECEIVES_MAX = 10;

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

async function queueAttributes(sqs: SQSClient, url: string) {
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
  const response = await sqs.send(command);
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
function cutoffOf(options: RedriveOptions, startedAt: number, serverTime: number | undefined): number {
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
        arrivedLater: 0,
        failures: [],
        destinations: moved > 0 ? { [destinationArn]: moved } : {},
        interrupted: status === 'CANCELLED',
        complete: status === 'COMPLETED',
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
    // Not the DLQ message's own id: a copy whose id reached the destination in the last 5 minutes would be dropped
    // silently, and its original deleted. Ours is the same on a retry of this message and unique across messages.
    entry.MessageDeduplicationId = `redrive-${message.MessageId}`;
  }
  return entry;
}

/**
 * Sets the visibility timeout of messages in hand, 10 per call, best effort: a batch that fails is skipped (those
 * messages reappear when their current timeout runs out) and the others are still changed.
 */
async function changeVisibility(
  sqs: SQSClient,
  queueUrl: string,
  receiptHandles: Iterable<string>,
  timeoutS: number,
): Promise<void> {
  const handles = [...new Set(receiptHandles)];
  for (let first = 0; first < handles.length; first += SEND_MAX_ENTRIES) {
    const entries = handles
      .slice(first, first + SEND_MAX_ENTRIES)
      .map((handle, index) => ({ Id: String(index), ReceiptHandle: handle, VisibilityTimeout: timeoutS }));
    await sqs
      .send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: queueUrl, Entries: entries }))
      .catch(() => undefined);
  }
}

function visibilityOf(options: RedriveOptions): number {
  return options.visibilityTimeoutS ?? DEFAULT_VISIBILITY_TIMEOUT_S;
}

/**
 * Keeps what the run holds (and the batch in hand, if a send is slow) hidden while the run lives: renews the
 * visibility timeout at half its length. Held messages that reappeared would look like new receives with nothing to
 * move and end the run early. Returns the function that stops it.
 */
function keepHidden(sqs: SQSClient, run: LoopRun): () => Promise<void> {
  const timeoutS = visibilityOf(run.options);
  let renewing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    renewing = renewing.then(() =>
      changeVisibility(sqs, run.options.from, [...run.held.values(), ...run.inHand.values()], timeoutS),
    );
  }, timeoutS * 500);
  return async () => {
    clearInterval(timer);
    await renewing;
  };
}

/** What one run of the loop has done so far. */
interface LoopRun {
  options: RedriveOptions;
  dlqArn: string;
  /** SentTimestamp (SQS's clock, ms) after which a message arrived after the run started: it waits for the next run. */
  cutoff: number;
  moved: number;
  failures: RedriveFailure[];
  failedIds: Set<string>;
  destinations: Record<string, number>;
  /** Ids this run gave the messages it sent, to recognise one that comes back. */
  sentIds: Set<string>;
  returnedIds: Set<string>;
  laterIds: Set<string>;
  /** Receipt handles of the messages in hand that were not moved, by message id: released when the run ends. */
  held: Map<string, string>;
  /** Receipt handles of the batch being moved, by message id: kept hidden while a send is slow. */
  inHand: Map<string, string>;
  /** Source message ids this run moved: standard SQS may hand one out again after its deletion. */
  movedIds: Set<string>;
  /** FIFO groups with a message this run did not move: the rest of the group waits too, to keep the order. */
  failedGroups: Set<string>;
}

type LoopResult = Omit<RedriveSummary, 'remaining' | 'durationMs'>;

function fail(run: LoopRun, message: Message | undefined, error: string): void {
  const id = message?.MessageId ?? '';
  run.failedIds.add(id);
  run.failures.push({ messageId: id || '?', error });
  if (message?.ReceiptHandle) run.held.set(id, message.ReceiptHandle);
  const group = message?.Attributes?.MessageGroupId;
  if (group) run.failedGroups.add(group);
}

/**
 * Keeps the messages this run should move: neither failed already, nor a copy it sent that came back (SQS keeps the
 * id when dead-lettering; the handler records it as quarantine.messageId), nor sent after the run started. The others
 * stay in hand (hidden) until the run ends, so the next receives reach the messages behind them.
 */
function eligibleOf(run: LoopRun, messages: Message[]): { eligible: Message[]; movedAlready: Message[] } {
  const eligible: Message[] = [];
  const movedAlready: Message[] = [];
  for (const message of messages) {
    const id = message.MessageId ?? '';
    if (run.movedIds.has(id)) {
      movedAlready.push(message);
      continue;
    }
    const sentAt = Number(message.Attributes?.SentTimestamp);
    if (run.sentIds.has(id) || run.sentIds.has(quarantineReason(message, 'messageId') ?? '')) run.returnedIds.add(id);
    // No (or an unreadable) SentTimestamp: not provably there at the start, so left and counted like a later one.
    else if (!(sentAt <= run.cutoff)) run.laterIds.add(id);
    else if (!run.failedIds.has(id)) {
      eligible.push(message);
      continue;
    }
    if (message.ReceiptHandle) run.held.set(id, message.ReceiptHandle);
  }
  return { eligible, movedAlready };
}

/** Deletes a copy SQS handed out again of a message this run already moved (at-least-once delivery), best effort. */
async function deleteMovedAlready(sqs: SQSClient, run: LoopRun, messages: Message[]): Promise<void> {
  if (messages.length === 0) return;
  await sqs
    .send(
      new DeleteMessageBatchCommand({
        QueueUrl: run.options.from,
        Entries: messages.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle })),
      }),
    )
    .catch(() => undefined);
}

async function receive(sqs: SQSClient, run: LoopRun, wanted: number): Promise<Message[]> {
  const { options } = run;
  const request = async (wait: number) =>
    (
      await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: options.from,
          MaxNumberOfMessages: wanted,
          VisibilityTimeout: visibilityOf(options),
          WaitTimeSeconds: wait,
          MessageAttributeNames: ['All'],
          // local-aws-sqs only reads the older AttributeNames; SQS accepts both.
          AttributeNames: ['All'],
          MessageSystemAttributeNames: ['All'],
        }),
      )
    ).Messages ?? [];
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

/** Groups by destination; a message with no known origin fails and stays where it is. */
async function route(
  run: LoopRun,
  messages: Message[],
  resolveUrl: (arn: string) => Promise<string>,
): Promise<Map<string, Message[]>> {
  const byDestination = new Map<string, Message[]>();
  for (const message of messages) {
    let url = run.options.to;
    const arn = url ? undefined : sourceArnOf(message, run.dlqArn);
    if (arn) {
      try {
        url = await resolveUrl(arn);
      } catch (error) {
        fail(run, message, describe(error));
        continue;
      }
    }
    if (!url) {
      fail(
        run,
        message,
        'no source queue recorded on the message (no quarantine.sourceQueue or DeadLetterQueueSourceArn): pass --to',
      );
      continue;
    }
    const queued = byDestination.get(url);
    if (queued) queued.push(message);
    else byDestination.set(url, [message]);
  }
  return byDestination;
}

/** Sends one batch to one destination; returns the messages it took. */
async function sendBatch(
  sqs: SQSClient,
  run: LoopRun,
  url: string,
  batch: { message: Message; entry: SendMessageBatchRequestEntry }[],
): Promise<Message[]> {
  try {
    const response = await sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: batch.map((p) => p.entry) }));
    for (const success of response.Successful ?? []) if (success.MessageId) run.sentIds.add(success.MessageId);
    const ok = new Set((response.Successful ?? []).map((s) => s.Id));
    const sent = batch.filter((p) => ok.has(p.entry.Id)).map((p) => p.message);
    if (sent.length > 0) run.destinations[url] = (run.destinations[url] ?? 0) + sent.length;
    for (const failed of response.Failed ?? []) {
      const p = batch.find((candidate) => candidate.entry.Id === failed.Id);
      fail(run, p?.message, `${failed.Code}: ${failed.Message}`);
    }
    return sent;
  } catch (error) {
    for (const p of batch) fail(run, p.message, describe(error));
    return [];
  }
}

async function sendAll(sqs: SQSClient, run: LoopRun, byDestination: Map<string, Message[]>): Promise<Message[]> {
  const sent: Message[] = [];
  for (const [url, messages] of byDestination) {
    const fifo = url.endsWith('.fifo');
    const prepared = messages.map((message, index) => ({ message, entry: toEntry(message, String(index), fifo) }));
    for (const batch of batchEntries(prepared)) {
      const ready = fifo ? batch.filter((p) => !heldForOrder(run, p.message)) : batch;
      if (ready.length > 0) sent.push(...(await sendBatch(sqs, run, url, ready)));
    }
  }
  return sent;
}

/** A FIFO message whose group already has one this run did not move: sending it would overtake that one. */
function heldForOrder(run: LoopRun, message: Message): boolean {
  const group = message.Attributes?.MessageGroupId;
  if (!group || !run.failedGroups.has(group)) return false;
  fail(run, message, `not sent: an earlier message of FIFO group ${group} was not moved (order kept); run it again`);
  return true;
}

/** Deletes from the source what was sent: only then is a message moved. */
async function deleteSent(sqs: SQSClient, run: LoopRun, sent: Message[]): Promise<void> {
  if (sent.length === 0) return;
  const notDeleted = 'sent, but not deleted from the source: it will be moved again by the next run';
  try {
    const response = await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: run.options.from,
        Entries: sent.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle })),
      }),
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

/**
 * Receive, send, then delete, until a receive finds nothing, --max is reached, or IDLE_RECEIVES_MAX receives in a row
 * found only messages this run leaves (came back, arrived later, failed already): each is held hidden (renewed) until
 * the run ends, so the visible ones dwindle unless new ones keep arriving; the run ends then too, incomplete. Each
 * message there at the start is moved or failed at most once, so receives that move something are bounded too.
 */
async function loop(sqs: SQSClient, options: RedriveOptions, total: number, dlqArn: string, cutoff: number) {
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
  };
  const resolveUrl = createQueueUrlResolver(sqs);
  const stopKeeping = keepHidden(sqs, run);
  let idle = 0;
  let interrupted = false;
  try {
    for (;;) {
      interrupted = options.signal?.aborted ?? false;
      const done = run.moved + run.failures.length;
      if (interrupted || (options.max !== undefined && done >= options.max)) break;
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
    await changeVisibility(sqs, options.from, [...run.held.values(), ...run.inHand.values()], 0);
  }
  return summaryOf(run, interrupted, idle < IDLE_RECEIVES_MAX && !interrupted);
}

function summaryOf(run: LoopRun, interrupted: boolean, complete: boolean): LoopResult {
  return {
    method: 'loop',
    moved: run.moved,
    failed: run.failures.length,
    returned: run.returnedIds.size,
    arrivedLater: run.laterIds.size,
    failures: run.failures,
    destinations: run.destinations,
    interrupted,
    complete,
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
  let source: Awaited<ReturnType<typeof queueAttributes>>;
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
  result ??= await loop(sqs, options, total, source.arn, cutoffOf(options, startedAt, source.serverTime));
  const remaining = (await queueAttributes(sqs, options.from).catch(() => ({ visible: Number.NaN }))).visible;
  return { ...result, remaining, durationMs: Date.now() - startedAt };
}
