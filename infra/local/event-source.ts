import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ListQueueTagsCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { Context, SQSEvent, SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import { createLambdaContext } from './context';

/** Any SQS-triggered Lambda handler: the real one, or a stub in a test. Its answer is checked like Lambda does. */
export type SqsHandler = (event: SQSEvent, context: Context) => Promise<unknown>;

/** The mapping's settings were refused, as Lambda's CreateEventSourceMapping would refuse them. */
export class EventSourceConfigError extends Error {
  override readonly name = 'EventSourceConfigError';
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`${setting}: ${message}`);
  }
}

export interface EventSourceOptions {
  client: SQSClient;
  queue: { url: string; arn: string };
  handler: SqsHandler;
  /** Records per invocation, 1 to 10,000 (Lambda's BatchSize). Default 10. */
  batchSize?: number;
  /** How long to gather records before invoking, 0 to 300 s (MaximumBatchingWindowInSeconds). Default 0. */
  maximumBatchingWindowS?: number;
  /** Concurrent pollers, each invoking the handler one batch at a time (the mapping's concurrency). Default 2. */
  concurrency?: number;
  /** The function timeout: the context's deadline, and when an unanswered invocation counts as failed. */
  functionTimeoutMs?: number;
  functionName?: string;
  /** FunctionResponseTypes: ['ReportBatchItemFailures']. Default true. */
  reportBatchItemFailures?: boolean;
  /** WaitTimeSeconds of a ReceiveMessage on an idle queue (long polling), 0 to 20. Default 1. */
  pollWaitS?: number;
  /**
   * SQS's in-flight limit for the queue (about 120,000 on AWS), scaled down for a run: at it a receive waits its long
   * poll and answers empty, without an error, as SQS does. Default: no limit.
   */
  inflightCeiling?: number;
  /**
   * Like a disabled mapping while the queue carries this tag (a paused endpoint's lane): no receive, the tag read
   * again every `checkEveryMs` (default 2000). Batches already received run to the end, as in Lambda.
   */
  disabledByTag?: { tag: string; checkEveryMs?: number };
  /** Called after every invocation, with what happened to its records. */
  onInvocation?: (report: InvocationReport) => void;
  /** Called when a ReceiveMessage or DeleteMessageBatch call fails (counted in pollErrors); the poller carries on. */
  onPollError?: (error: unknown) => void;
}

/**
 * success: every record deleted. partial: the ones in batchItemFailures kept. error: the handler threw.
 * timeout: no answer within the function timeout. invalid-response: the answer named no record of the batch,
 * or was not a batch response; Lambda then keeps the whole batch.
 */
export type InvocationOutcome = 'success' | 'partial' | 'error' | 'timeout' | 'invalid-response';

export interface InvocationReport {
  requestId: string;
  outcome: InvocationOutcome;
  records: number;
  /** Records received before (ApproximateReceiveCount > 1). */
  redelivered: number;
  /** Deleted from the queue. */
  acknowledged: number;
  /** Left on the queue for its visibility timeout (or the handler's own backoff). */
  failed: number;
  /** Acknowledged records SQS refused to delete; they will come back. */
  deleteErrors: number;
  durationMs: number;
  /** Why the whole batch failed (error, timeout, invalid-response). */
  error?: string;
}

export interface EventSourceStats {
  invocations: number;
  received: number;
  redelivered: number;
  acknowledged: number;
  failed: number;
  errors: number;
  timeouts: number;
  invalidResponses: number;
  deleteErrors: number;
  pollErrors: number;
  /** Invocations running now. */
  running: number;
  /** The largest in-flight count of the queue seen (read before each receive). */
  maxInFlight: number;
  /** Receives answered empty because the queue was at the in-flight ceiling. */
  ceilingHits: number;
  /** Turns a poller skipped because the queue carried `disabledByTag` (a paused lane). */
  disabledPolls: number;
}

const SQS_MAX_RECEIVE = 10;
/** How often an event source with `disabledByTag` reads its queue's tags: a pause or resume shows within this. */
const DISABLED_CHECK_MS = 2_000;
/** Lambda invokes early once a batch reaches its 6 MB invocation payload limit. */
const MAX_PAYLOAD_BYTES = 6 * 1024 * 1024;
// Lambda's SQS record attributes, in Lambda's order; anything else SQS returns is left out.
const RECORD_ATTRIBUTES = [
  'ApproximateReceiveCount',
  'SentTimestamp',
  'SenderId',
  'ApproximateFirstReceiveTimestamp',
  'SequenceNumber',
  'MessageGroupId',
  'MessageDeduplicationId',
  'AWSTraceHeader',
  'DeadLetterQueueSourceArn',
] as const;

/** Bytes as base64, whatever shape the client handed them over in (local-aws-sqs sends a JSON'd Uint8Array). */
function toBase64(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (typeof value === 'object') return Buffer.from(Object.values(value).map(Number)).toString('base64');
  return undefined;
}

function lambdaAttributes(attributes: Record<string, MessageAttributeValue> | undefined): SQSMessageAttributes {
  const out: SQSMessageAttributes = {};
  for (const [name, value] of Object.entries(attributes ?? {})) {
    const binary = toBase64(value.BinaryValue);
    out[name] = {
      ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
      ...(binary !== undefined ? { binaryValue: binary } : {}),
      stringListValues: [],
      binaryListValues: [],
      dataType: value.DataType ?? 'String',
    };
  }
  return out;
}

/** One received SQS message as Lambda puts it in `event.Records`. */
export function toSqsRecord(message: Message, queueArn: string): SQSRecord {
  const region = queueArn.split(':')[3] ?? '';
  const attributes: Record<string, string> = {};
  for (const name of RECORD_ATTRIBUTES) {
    const value = message.Attributes?.[name];
    if (value !== undefined) attributes[name] = value;
  }
  const messageAttributes = lambdaAttributes(message.MessageAttributes);
  return {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body: message.Body ?? '',
    attributes: attributes as unknown as SQSRecord['attributes'],
    messageAttributes,
    md5OfBody: message.MD5OfBody ?? '',
    ...(message.MD5OfMessageAttributes ? { md5OfMessageAttributes: message.MD5OfMessageAttributes } : {}),
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  };
}

type Verdict = { kind: 'keep'; failed: Set<string> } | { kind: 'invalid'; reason: string };

/** Reads a handler's answer the way the mapping does with ReportBatchItemFailures on. */
export function readBatchResponse(response: unknown, batchIds: ReadonlySet<string>): Verdict {
  // No answer, an empty one, or a null/empty list: the whole batch succeeded.
  if (response === undefined || response === null) return { kind: 'keep', failed: new Set() };
  if (typeof response !== 'object' || Array.isArray(response)) {
    return { kind: 'invalid', reason: `the handler answered ${JSON.stringify(response)}, not a batch response` };
  }
  const failures: unknown = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === undefined || failures === null) return { kind: 'keep', failed: new Set() };
  if (!Array.isArray(failures)) return { kind: 'invalid', reason: 'batchItemFailures is not a list' };
  const failed = new Set<string>();
  for (const failure of failures) {
    const id: unknown =
      typeof failure === 'object' && failure !== null ? Reflect.get(failure, 'itemIdentifier') : undefined;
    if (typeof id !== 'string' || id === '') {
      return { kind: 'invalid', reason: `batchItemFailures holds ${JSON.stringify(failure)}: no itemIdentifier` };
    }
    if (!batchIds.has(id)) {
      return { kind: 'invalid', reason: `batchItemFailures names ${id}, which is not a message of this batch` };
    }
    failed.add(id);
  }
  return { kind: 'keep', failed };
}

class FunctionTimeoutError extends Error {
  override readonly name = 'FunctionTimeoutError';
  constructor(timeoutMs: number) {
    super(`Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`);
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function isAbort(error: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (error instanceof Error && error.name === 'AbortError');
}

/** Resolves after `ms`, or at once when the signal fires. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

/**
 * Lambda's SQS event source mapping, on loopback: pollers receive batches (up to `batchSize` within the batching
 * window), invoke the handler with a Lambda-like context, delete what it acknowledged and leave the rest to the
 * visibility timeout. A thrown error, a timeout or a malformed answer fails the whole batch, as in Lambda.
 */
export class SqsEventSource {
  readonly #options: Required<
    Omit<EventSourceOptions, 'onInvocation' | 'onPollError' | 'functionName' | 'inflightCeiling' | 'disabledByTag'>
  > &
    Pick<EventSourceOptions, 'onInvocation' | 'onPollError' | 'functionName' | 'inflightCeiling' | 'disabledByTag'>;
  readonly #stats: EventSourceStats = {
    invocations: 0,
    received: 0,
    redelivered: 0,
    acknowledged: 0,
    failed: 0,
    errors: 0,
    timeouts: 0,
    invalidResponses: 0,
    deleteErrors: 0,
    pollErrors: 0,
    running: 0,
    maxInFlight: 0,
    ceilingHits: 0,
    disabledPolls: 0,
  };
  /** Messages asked for by receives under way: counted against the ceiling until SQS shows them in flight. */
  #reserved = 0;
  /** One ceiling check at a time, so two pollers cannot both take the last free places. */
  #checking: Promise<unknown> = Promise.resolve();
  #controller: AbortController | undefined;
  #pollers: Promise<void>[] = [];
  /** The last read of `disabledByTag`, shared by the pollers: one ListQueueTags at a time. */
  #tag: { at: number; disabled: boolean; reading?: Promise<boolean> } = {
    at: Number.NEGATIVE_INFINITY,
    disabled: false,
  };

  constructor(options: EventSourceOptions) {
    const batchSize = options.batchSize ?? 10;
    const windowS = options.maximumBatchingWindowS ?? 0;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
      throw new EventSourceConfigError('batchSize', `${batchSize} is not a whole number from 1 to 10000`);
    }
    if (!(windowS >= 0 && windowS <= 300)) {
      throw new EventSourceConfigError('maximumBatchingWindowS', `${windowS} is not from 0 to 300 seconds`);
    }
    if (batchSize > SQS_MAX_RECEIVE && windowS === 0) {
      throw new EventSourceConfigError(
        'maximumBatchingWindowS',
        `a batch size of ${batchSize} (over 10) needs a batching window of at least 1 s, as Lambda requires`,
      );
    }
    const concurrency = options.concurrency ?? 2;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new EventSourceConfigError('concurrency', `${concurrency} is not a whole number of pollers from 1`);
    }
    const pollWaitS = options.pollWaitS ?? 1;
    if (!Number.isInteger(pollWaitS) || pollWaitS < 0 || pollWaitS > 20) {
      throw new EventSourceConfigError('pollWaitS', `${pollWaitS} is not a whole number of seconds from 0 to 20`);
    }
    const ceiling = options.inflightCeiling;
    if (ceiling !== undefined && !(Number.isInteger(ceiling) && ceiling >= 1)) {
      throw new EventSourceConfigError('inflightCeiling', `${ceiling} is not a whole number of messages from 1`);
    }
    this.#options = {
      ...options,
      batchSize,
      maximumBatchingWindowS: windowS,
      concurrency,
      pollWaitS,
      functionTimeoutMs: options.functionTimeoutMs ?? 30_000,
      reportBatchItemFailures: options.reportBatchItemFailures ?? true,
    };
  }

  get stats(): Readonly<EventSourceStats> {
    return { ...this.#stats };
  }

  /** Whether the queue carried `disabledByTag` at the last check (no receives meanwhile). */
  get disabled(): boolean {
    return this.#tag.disabled;
  }

  get running(): boolean {
    return this.#controller !== undefined && !this.#controller.signal.aborted;
  }

  /** Starts the pollers; `signal` (e.g. from Ctrl-C) stops them like stop() does. */
  start(signal?: AbortSignal): void {
    if (this.running) return;
    const controller = new AbortController();
    this.#controller = controller;
    signal?.addEventListener('abort', () => controller.abort(), { once: true });
    this.#pollers = Array.from({ length: this.#options.concurrency }, () => this.#poll(controller.signal));
  }

  /**
   * Stops polling and waits for running invocations to finish and be acknowledged (at most the function timeout).
   * A batch being gathered is invoked with what it has; messages a cut-off receive had taken return after their
   * visibility timeout.
   */
  async stop(): Promise<void> {
    this.#controller?.abort();
    await Promise.all(this.#pollers);
    this.#pollers = [];
  }

  async #poll(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (await this.#isDisabled(signal)) {
        this.#stats.disabledPolls++;
        await pause(this.#options.disabledByTag?.checkEveryMs ?? DISABLED_CHECK_MS, signal);
        continue;
      }
      let records: SQSRecord[];
      try {
        records = await this.#gather(signal);
      } catch (error) {
        if (isAbort(error, signal)) break;
        this.#stats.pollErrors++;
        this.#options.onPollError?.(error);
        await pause(1000, signal);
        continue;
      }
      if (records.length > 0) await this.#invoke(records);
    }
  }

  /** Whether the queue carries `disabledByTag` now (read at most every checkEveryMs); a failed read keeps the last. */
  #isDisabled(signal: AbortSignal): Promise<boolean> {
    const rule = this.#options.disabledByTag;
    if (!rule) return Promise.resolve(false);
    if (Date.now() - this.#tag.at < (rule.checkEveryMs ?? DISABLED_CHECK_MS))
      return Promise.resolve(this.#tag.disabled);
    this.#tag.reading ??= this.#options.client
      .send(new ListQueueTagsCommand({ QueueUrl: this.#options.queue.url }), { abortSignal: signal })
      .then(
        ({ Tags }) => {
          this.#tag.disabled = Tags?.[rule.tag] !== undefined;
        },
        (error: unknown) => {
          if (isAbort(error, signal)) return;
          this.#stats.pollErrors++;
          this.#options.onPollError?.(error);
        },
      )
      .then(() => {
        this.#tag.at = Date.now();
        this.#tag.reading = undefined;
        return this.#tag.disabled;
      });
    return this.#tag.reading;
  }

  /** One batch: receives until the batch is full, or the window closes, or (no window) the first records arrive. */
  async #gather(signal: AbortSignal): Promise<SQSRecord[]> {
    const { batchSize, maximumBatchingWindowS, pollWaitS } = this.#options;
    const byId = new Map<string, SQSRecord>();
    let windowEnds = Number.POSITIVE_INFINITY;
    let bytes = 0;
    while (byId.size < batchSize && bytes < MAX_PAYLOAD_BYTES && !signal.aborted) {
      const left = windowEnds - Date.now();
      if (byId.size > 0 && left <= 0) break;
      const waitS = byId.size === 0 ? pollWaitS : Math.min(pollWaitS, Math.floor(left / 1000));
      let messages: Message[];
      try {
        messages = await this.#receive(Math.min(SQS_MAX_RECEIVE, batchSize - byId.size), waitS, signal);
      } catch (error) {
        // Stopping with records in hand: invoke them rather than leave them to the visibility timeout.
        if (isAbort(error, signal) && byId.size > 0) break;
        throw error;
      }
      if (messages.length > 0 && byId.size === 0) windowEnds = Date.now() + maximumBatchingWindowS * 1000;
      // A message seen twice in one window (its visibility ran out) keeps only its newest receipt handle.
      for (const message of messages) {
        byId.set(message.MessageId ?? '', toSqsRecord(message, this.#options.queue.arn));
        bytes += Buffer.byteLength(message.Body ?? '');
      }
      if (maximumBatchingWindowS === 0 && byId.size > 0) break;
      // A short poll that came back empty: wait a little instead of spinning.
      if (messages.length === 0 && waitS === 0) await pause(byId.size > 0 ? Math.min(100, left) : 50, signal);
      // Nothing yet: back to the poll loop, which reads the pause tag before the next receive.
      if (byId.size === 0 && messages.length === 0 && this.#options.disabledByTag) break;
    }
    return [...byId.values()];
  }

  /** Reads the queue's in-flight count (local-aws-sqs counts it exactly) and keeps the largest seen. */
  async #inFlight(signal: AbortSignal): Promise<number> {
    const { Attributes = {} } = await this.#options.client.send(
      new GetQueueAttributesCommand({
        QueueUrl: this.#options.queue.url,
        AttributeNames: ['ApproximateNumberOfMessagesNotVisible'],
      }),
      { abortSignal: signal },
    );
    const inFlight = Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0);
    this.#stats.maxInFlight = Math.max(this.#stats.maxInFlight, inFlight);
    return inFlight;
  }

  /** How many messages a receive may take now without passing the ceiling; reserves them. */
  async #reserve(max: number, signal: AbortSignal): Promise<number> {
    const check = this.#checking.then(async () => {
      // Taken before the read: a receive that ends meanwhile is then counted twice at worst, never missed.
      const reserved = this.#reserved;
      const inFlight = await this.#inFlight(signal);
      const ceiling = this.#options.inflightCeiling ?? Number.POSITIVE_INFINITY;
      const allowed = Math.max(0, Math.min(max, ceiling - inFlight - reserved));
      this.#reserved += allowed;
      return allowed;
    });
    this.#checking = check.catch(() => undefined);
    return check;
  }

  async #receive(max: number, waitS: number, signal: AbortSignal): Promise<Message[]> {
    const allowed = await this.#reserve(max, signal);
    if (allowed === 0) {
      // SQS at its in-flight limit: a long poll gets no error and no messages.
      this.#stats.ceilingHits++;
      await pause(waitS * 1000, signal);
      return [];
    }
    try {
      return await this.#receiveUpTo(allowed, waitS, signal);
    } finally {
      this.#reserved -= allowed;
    }
  }

  async #receiveUpTo(max: number, waitS: number, signal: AbortSignal): Promise<Message[]> {
    const response = await this.#options.client.send(
      new ReceiveMessageCommand({
        QueueUrl: this.#options.queue.url,
        MaxNumberOfMessages: max,
        WaitTimeSeconds: waitS,
        // The SDK's current name, and the older one local-aws-sqs reads.
        MessageSystemAttributeNames: ['All'],
        AttributeNames: ['All'],
        MessageAttributeNames: ['All'],
      }),
      { abortSignal: signal },
    );
    return response.Messages ?? [];
  }

  async #invoke(records: SQSRecord[]): Promise<void> {
    const { functionTimeoutMs, handler, reportBatchItemFailures, functionName } = this.#options;
    const started = Date.now();
    const context = createLambdaContext({
      timeoutMs: functionTimeoutMs,
      startedAt: started,
      ...(functionName ? { functionName } : {}),
    });
    const ids = new Set(records.map((record) => record.messageId));
    const redelivered = records.filter((record) => Number(record.attributes.ApproximateReceiveCount) > 1).length;
    this.#stats.invocations++;
    this.#stats.running++;
    this.#stats.received += records.length;
    this.#stats.redelivered += redelivered;

    let outcome: InvocationOutcome;
    let keep: Set<string>;
    let error: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      // Lambda stops a function at its timeout; here the handler keeps running, but its answer is ignored.
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new FunctionTimeoutError(functionTimeoutMs)), functionTimeoutMs);
      });
      const response = await Promise.race([handler({ Records: records }, context), timeout]);
      const verdict: Verdict = reportBatchItemFailures
        ? readBatchResponse(response, ids)
        : { kind: 'keep', failed: new Set() };
      if (verdict.kind === 'invalid') {
        outcome = 'invalid-response';
        keep = ids;
        error = verdict.reason;
        this.#stats.invalidResponses++;
      } else {
        keep = verdict.failed;
        outcome = keep.size === 0 ? 'success' : 'partial';
      }
    } catch (thrown) {
      keep = ids;
      error = errorText(thrown);
      outcome = thrown instanceof FunctionTimeoutError ? 'timeout' : 'error';
      if (outcome === 'timeout') this.#stats.timeouts++;
      else this.#stats.errors++;
    } finally {
      clearTimeout(timer);
    }

    const acknowledged = records.filter((record) => !keep.has(record.messageId));
    const deleteErrors = await this.#delete(acknowledged);
    this.#stats.running--;
    this.#stats.acknowledged += acknowledged.length - deleteErrors;
    this.#stats.failed += keep.size;
    this.#stats.deleteErrors += deleteErrors;
    this.#options.onInvocation?.({
      requestId: context.awsRequestId,
      outcome,
      records: records.length,
      redelivered,
      acknowledged: acknowledged.length - deleteErrors,
      failed: keep.size,
      deleteErrors,
      durationMs: Date.now() - started,
      ...(error !== undefined ? { error } : {}),
    });
  }

  /** Deletes acknowledged records, 10 per call; returns how many SQS did not delete. */
  async #delete(records: SQSRecord[]): Promise<number> {
    let errors = 0;
    const calls: Promise<void>[] = [];
    for (let i = 0; i < records.length; i += SQS_MAX_RECEIVE) {
      const chunk = records.slice(i, i + SQS_MAX_RECEIVE);
      calls.push(
        this.#options.client
          .send(
            new DeleteMessageBatchCommand({
              QueueUrl: this.#options.queue.url,
              Entries: chunk.map((record, index) => ({ Id: String(index), ReceiptHandle: record.receiptHandle })),
            }),
          )
          .then(
            (response) => {
              errors += response.Failed?.length ?? 0;
            },
            (error: unknown) => {
              errors += chunk.length;
              this.#stats.pollErrors++;
              this.#options.onPollError?.(error);
            },
          ),
      );
    }
    await Promise.all(calls);
    return errors;
  }
}
