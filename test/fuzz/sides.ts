import diagnostics from 'node:diagnostics_channel';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import {
  ChangeMessageVisibilityBatchCommand,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { createBackoff } from '../../lib/settle/backoff';
import { createQuarantine } from '../../lib/settle/quarantine';
import type { Backoff, Quarantine, QuarantineItem } from '../../lib/types';

/** How a side effect behaves during one invocation. `hang` waits until the signal it was given aborts. */
export type Fault = 'ok' | 'throw' | 'partial' | 'hang';

export interface Faults {
  quarantine: Fault;
  backoff: Fault;
  lookup: Fault;
  record: Fault;
}

export const HEALTHY: Faults = { quarantine: 'ok', backoff: 'ok', lookup: 'ok', record: 'ok' };

export function hang(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_resolve, reject) => {
    const fail = () => reject(Object.assign(new Error('Request aborted'), { name: 'AbortError' }));
    if (signal?.aborted) fail();
    else signal?.addEventListener('abort', fail, { once: true });
  });
}

// SQS accepts #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF in attribute values.
const SQS_REFUSED = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

function sendable(entry: SendMessageBatchRequestEntry): boolean {
  return Object.values(entry.MessageAttributes ?? {}).every(
    (value) => value.StringValue === undefined || !SQS_REFUSED.test(value.StringValue),
  );
}

/**
 * The real quarantine and backoff code over an SQS client whose `send` answers in process, as SQS would (per entry
 * success or failure, a thrown error, or a call that hangs until aborted). Records what they were asked.
 */
export class FakeSqs {
  readonly client = new SQSClient({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9' });
  faults: Faults = HEALTHY;
  /** Visibility timeouts asked in the current invocation, by receipt handle. */
  visibility: Array<{ receiptHandle: string; seconds: number }> = [];

  constructor() {
    const send = async (command: unknown, options?: { abortSignal?: AbortSignal }): Promise<unknown> => {
      if (command instanceof SendMessageBatchCommand) {
        const entries = command.input.Entries ?? [];
        return this.#answer(this.faults.quarantine, entries, options?.abortSignal, sendable);
      }
      if (command instanceof ChangeMessageVisibilityBatchCommand) {
        const entries = command.input.Entries ?? [];
        for (const entry of entries) {
          this.visibility.push({ receiptHandle: entry.ReceiptHandle ?? '', seconds: entry.VisibilityTimeout ?? 0 });
        }
        return this.#answer(this.faults.backoff, entries, options?.abortSignal, () => true);
      }
      throw new Error(`the fuzz SQS fake does not speak ${(command as object).constructor.name}`);
    };
    this.client.send = send as SQSClient['send'];
  }

  async #answer<T extends { Id?: string | undefined }>(
    fault: Fault,
    entries: T[],
    signal: AbortSignal | undefined,
    accept: (entry: T) => boolean,
  ) {
    if (fault === 'hang') return hang(signal);
    if (fault === 'throw') throw Object.assign(new Error('Service unavailable'), { name: 'ServiceUnavailable' });
    const ok = (entry: T, index: number) => accept(entry) && (fault === 'ok' || index % 2 === 0);
    return {
      Successful: entries.filter(ok).map((entry) => ({ Id: entry.Id, MessageId: `q-${entry.Id}` })),
      Failed: entries
        .filter((entry, index) => !ok(entry, index))
        .map((entry) => ({ Id: entry.Id, Code: 'InternalError', SenderFault: false, Message: 'try again' })),
    };
  }
}

/** The real quarantine, remembering what it was given and what it confirmed, and when, in this invocation. */
export function watchedQuarantine(sqs: FakeSqs, fifo: boolean, clock: { tick: number }) {
  const real = createQuarantine(sqs.client, `http://127.0.0.1:9/123456789012/quarantine${fifo ? '.fifo' : ''}`);
  // Confirmed message id → logical time of the confirmation (the clock the endpoints share).
  const seen = { sent: [] as QuarantineItem[], confirmed: new Map<string, number>() };
  // Every item confirmed over the whole scenario (the lanes' end state reads it).
  const settled: QuarantineItem[] = [];
  const quarantine: Quarantine = {
    async send(items, signal) {
      seen.sent.push(...items);
      const safe = await real.send(items, signal);
      const tick = ++clock.tick;
      for (const id of safe) seen.confirmed.set(id, tick);
      settled.push(...items.filter((item) => safe.has(item.record.messageId)));
      return safe;
    },
  };
  return { quarantine, seen, settled };
}

export function realBackoff(sqs: FakeSqs, baseDelayS: number, maxDelayS: number): Backoff {
  return createBackoff(sqs.client, { baseDelayS, maxDelayS });
}

/**
 * The requests the product sent each endpoint in the current invocation and how each ended ('200', 'TIMEOUT', ...),
 * seen through the tracer seam: the endpoint's own count cannot tell "never sent" from "sent, then cut by the product's
 * own timeout before the endpoint read it" (the latter happens when a loaded machine stalls the process).
 */
export class AttemptLog {
  now = new Map<string, string[]>();
  // Only the calls lib/observability/observability.ts traceRequests makes; a real Tracer needs an X-Ray segment.
  readonly tracer = {
    isTracingEnabled: () => true,
    getSegment: () => ({
      addNewSubsegment: (name: string) => {
        const endpoint = name.replace(/^## endpoint /, '');
        const attempts = this.now.get(endpoint) ?? [];
        this.now.set(endpoint, attempts);
        const index = attempts.push('in flight') - 1;
        return {
          addAnnotation: (key: string, value: unknown) => {
            if (key === 'status') attempts[index] = String(value);
          },
          addError: (error: Error) => {
            attempts[index] = error.message;
          },
          close: () => {},
        };
      },
    }),
  } as unknown as Tracer;

  beginInvocation(): void {
    this.now = new Map();
  }
}

/**
 * Per endpoint origin, how many requests undici wrote to a socket in the current invocation (its
 * 'undici:client:sendHeaders' channel): a request the product sent but never wrote sat in the pool.
 */
export class WriteLog {
  now = new Map<string, number>();
  readonly #names: ReadonlyMap<string, string>;
  readonly #onSend = (message: unknown) => {
    const origin = (message as { request: { origin: string } }).request.origin;
    const name = this.#names.get(origin);
    if (name) this.now.set(name, (this.now.get(name) ?? 0) + 1);
  };

  /** `endpoints`: name → URL of each endpoint. */
  constructor(endpoints: ReadonlyMap<string, string>) {
    this.#names = new Map([...endpoints].map(([name, url]) => [new URL(url).origin, name]));
    diagnostics.subscribe('undici:client:sendHeaders', this.#onSend);
  }

  beginInvocation(): void {
    this.now = new Map();
  }

  close(): void {
    diagnostics.unsubscribe('undici:client:sendHeaders', this.#onSend);
  }
}

/**
 * The longest the event loop was held up during one invocation: the process runs the product and the endpoints, so a
 * stall this long also holds up undici's write and the endpoint's read while the product's attempt timer runs.
 */
export function watchEventLoop(): { stop: () => number } {
  // A 1 ms ticker measured from the start, not monitorEventLoopDelay: that histogram only records from its second tick,
  // so a stall right after enable() went unseen (seed 3400009: "held up 0 ms at most", 0 samples in a 48 ms recovery).
  let last = performance.now();
  let max = 0;
  const gap = () => {
    const now = performance.now();
    max = Math.max(max, now - last - 1);
    last = now;
  };
  const ticker = setInterval(gap, 1);
  return {
    stop: () => {
      clearInterval(ticker);
      gap();
      return Math.max(0, max);
    },
  };
}

export type { SQSRecord };
