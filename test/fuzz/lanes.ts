import {
  ChangeMessageVisibilityBatchCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  type Message,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SendMessageBatchResult,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import { createLaneSender, LANE_ATTRIBUTE, type LaneEnvelope, type LaneSender } from '../../lib/lanes';
import { type LocalQueue, localSqs, receiveAll, toLambdaRecord, uniqueName } from '../support/aws';
import type { LocalAws } from './local-aws';
import type { LaneFault } from './scenario';
import { hang } from './sides';

/** Records the fuzz's lane event source hands one invocation (one batch per lane per round: concurrency 1). */
export const LANE_BATCH = 3;
/** Rounds a lane record reported failed stays invisible: the lane's visibility timeout, 6 × the invocation time. */
export const HOLD_ROUNDS = 6;

/** (event key, endpoint) as one string. */
export const pair = (key: string, endpoint: string) => `${key}\u0000${endpoint}`;

interface Held {
  receiptHandle: string;
  until: number;
  /** Held for a reason the in-flight bound does not count (a side effect failed, a delivery cut by the deadline). */
  excused: boolean;
}

/** One lane round's view for the checks. */
export interface LaneRound {
  endpoint: string;
  records: SQSRecord[];
  /** Received and not acknowledged during the round: handed, plus held earlier and not excused. */
  inFlight: number;
}

function envelopeOf(attributes: SendMessageBatchRequestEntry['MessageAttributes']): LaneEnvelope | undefined {
  const raw = attributes?.[LANE_ATTRIBUTE]?.StringValue;
  return raw === undefined ? undefined : (JSON.parse(raw) as LaneEnvelope);
}

/**
 * One lane queue per endpoint on local SQS (`<prefix><endpoint>`), the real lib/lanes sender over a client that fails as
 * the invocation says (throws, refuses half the entries, hangs, or names a queue that does not exist), and the lanes'
 * event source. Time is virtual: round r stands for r × intervalS seconds. A send with DelaySeconds d goes to SQS with
 * none and becomes receivable ⌈d / intervalS⌉ rounds later; its envelope's times move d seconds back, as if d had passed.
 */
export class LaneQueues {
  fault: LaneFault = 'ok';
  /** The endpoint whose lane queue is missing in this invocation. */
  missing: string | undefined;
  round = 0;
  /** Pairs a lane durably holds since the start of the invocation (SQS answered the send Successful), and ever. */
  parkedNow = new Set<string>();
  readonly parkedEver = new Set<string>();
  /** Copies the harness put in another endpoint's lane ('stray'): each must be quarantined as lane-envelope-invalid. */
  readonly strays = new Set<string>();
  readonly sender: LaneSender;
  /** Per lane, every message it stores (the harness sees every send and delete) → the round it becomes receivable. */
  readonly #stored = new Map<string, Map<string, number>>();
  readonly #held = new Map<string, Map<string, Held>>();

  private constructor(
    private readonly sqs: SQSClient,
    readonly prefix: string,
    readonly queues: ReadonlyMap<string, LocalQueue>,
    private readonly intervalS: number,
  ) {
    const real = sqs.send.bind(sqs) as (command: unknown, options?: { abortSignal?: AbortSignal }) => Promise<unknown>;
    const wrapped = {
      send: (command: unknown, options?: { abortSignal?: AbortSignal }) =>
        command instanceof SendMessageBatchCommand ? this.#send(command, options, real) : real(command, options),
    } as unknown as SQSClient;
    this.sender = createLaneSender(wrapped, prefix);
    for (const name of queues.keys()) {
      this.#held.set(name, new Map());
      this.#stored.set(name, new Map());
    }
  }

  static async create(aws: LocalAws, endpoints: string[], intervalS: number): Promise<LaneQueues> {
    const sqs = localSqs(aws.sqsEndpoint);
    const prefixName = `${uniqueName('fz')}-lane-`;
    const queues = new Map<string, LocalQueue>();
    for (const endpoint of endpoints) {
      const name = `${prefixName}${endpoint}`;
      const url = (await sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl!;
      const described = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
      queues.set(endpoint, { url, arn: described.Attributes!.QueueArn!, name });
    }
    const first = [...queues.values()][0]!.url;
    return new LaneQueues(sqs, first.slice(0, first.lastIndexOf('/') + 1) + prefixName, queues, intervalS);
  }

  async #send(
    command: SendMessageBatchCommand,
    options: { abortSignal?: AbortSignal } | undefined,
    real: (command: unknown, options?: { abortSignal?: AbortSignal }) => Promise<unknown>,
  ): Promise<SendMessageBatchResult> {
    const url = command.input.QueueUrl ?? '';
    const lane = url.slice(this.prefix.length);
    const entries = command.input.Entries ?? [];
    if (this.fault === 'hang') return hang(options?.abortSignal);
    if (this.fault === 'throw') throw Object.assign(new Error('Service unavailable'), { name: 'ServiceUnavailable' });
    const kept = this.fault === 'partial' ? entries.filter((_entry, i) => i % 2 === 0) : entries;
    const refused = entries.filter((entry) => !kept.includes(entry));
    const compressed = kept.map((entry) => this.#compress(entry));
    // A lane that does not exist: local SQS's own answer (QueueDoesNotExist), thrown to the sender.
    const target = this.missing === lane ? `${url}-missing` : url;
    const answer = (
      compressed.length > 0
        ? await real(
            new SendMessageBatchCommand({ QueueUrl: target, Entries: compressed.map((c) => c.entry) }),
            options,
          )
        : {}
    ) as SendMessageBatchResult;
    for (const ok of answer.Successful ?? []) {
      const sent = compressed.find((c) => c.entry.Id === ok.Id)!;
      this.#stored.get(lane)?.set(ok.MessageId!, this.round + Math.ceil(sent.delayS / this.intervalS));
      this.parkedNow.add(pair(sent.key, lane));
      this.parkedEver.add(pair(sent.key, lane));
    }
    const first = compressed.find((c) => answer.Successful?.some((ok) => ok.Id === c.entry.Id));
    if (this.fault === 'stray' && first) await this.#stray(lane, first.entry, real);
    const failed = refused.map((entry) => ({ Id: entry.Id, Code: 'InternalError', SenderFault: false, Message: 'x' }));
    return { Successful: answer.Successful ?? [], Failed: [...(answer.Failed ?? []), ...failed] };
  }

  /** A copy of a message sent to `lane` goes to the next endpoint's lane too, as a misdirected redrive would put it. */
  async #stray(
    lane: string,
    entry: SendMessageBatchRequestEntry,
    real: (command: unknown, options?: { abortSignal?: AbortSignal }) => Promise<unknown>,
  ): Promise<void> {
    const names = [...this.queues.keys()];
    const other = names[(names.indexOf(lane) + 1) % names.length]!;
    if (other === lane) return;
    const answer = (await real(
      new SendMessageBatchCommand({ QueueUrl: this.queues.get(other)!.url, Entries: [{ ...entry, Id: 'stray' }] }),
    )) as SendMessageBatchResult;
    for (const ok of answer.Successful ?? []) {
      this.#stored.get(other)?.set(ok.MessageId!, this.round);
      this.strays.add(ok.MessageId!);
    }
  }

  /** The entry as sent: no delay, the envelope's times moved back by the delay asked. */
  #compress(entry: SendMessageBatchRequestEntry) {
    const delayS = entry.DelaySeconds ?? 0;
    const envelope = envelopeOf(entry.MessageAttributes)!;
    const shift = delayS * 1000;
    const moved = { ...envelope, f: Math.max(0, envelope.f - shift), d: Math.max(0, envelope.d - shift) };
    const attribute = { DataType: 'String', StringValue: JSON.stringify(moved) };
    return {
      entry: {
        ...entry,
        DelaySeconds: 0,
        MessageAttributes: { ...entry.MessageAttributes, [LANE_ATTRIBUTE]: attribute },
      },
      delayS,
      key: envelope.k,
    };
  }

  /**
   * One round of the lane's event source: what was held ends its visibility timeout when due, then one batch of
   * receivable messages goes to `invoke`; acknowledged ones are deleted, failed ones held for HOLD_ROUNDS.
   */
  async serve(
    endpoint: string,
    waiting: (envelope: LaneEnvelope) => boolean,
    invoke: (records: SQSRecord[]) => Promise<SQSBatchResponse>,
    healthy: boolean,
  ): Promise<{ round: LaneRound; response: SQSBatchResponse } | undefined> {
    const queue = this.queues.get(endpoint)!;
    const held = this.#held.get(endpoint)!;
    const stored = this.#stored.get(endpoint)!;
    // Nothing receivable this round: no call to SQS (the harness knows what each lane stores).
    if (this.#earliest(endpoint) !== this.round) return undefined;
    const released = [...held].filter(([, h]) => h.until <= this.round);
    await this.#visibility(
      queue.url,
      released.map(([, h]) => h.receiptHandle),
    );
    for (const [id] of released) held.delete(id);
    const messages = await receiveAll(this.sqs, queue.url, { visibilityTimeoutS: 600 });
    const due = messages.filter((m) => (stored.get(m.MessageId!) ?? 0) <= this.round);
    const handed = due.slice(0, LANE_BATCH);
    await this.#visibility(
      queue.url,
      messages.filter((m) => !handed.includes(m)).map((m) => m.ReceiptHandle!),
    );
    if (handed.length === 0) return undefined;
    const records = handed.map((m) => toLambdaRecord(m, queue.arn));
    // Handed while the endpoint is paused or before it is due: the product must send these back delayed.
    const waitingIds = new Set<string>();
    for (const record of records) {
      const envelope = JSON.parse(record.messageAttributes[LANE_ATTRIBUTE]?.stringValue ?? '{}') as LaneEnvelope;
      if (waiting(envelope)) waitingIds.add(record.messageId);
    }
    const inFlight = handed.length + [...held.values()].filter((h) => !h.excused).length;
    const response = await invoke(records);
    const failed = new Set(response.batchItemFailures.map((item) => item.itemIdentifier));
    await this.#delete(
      queue.url,
      stored,
      handed.filter((m) => !failed.has(m.MessageId!)),
    );
    for (const m of handed.filter((m) => failed.has(m.MessageId!))) {
      // Only a record handed while it had to wait (paused, not due) counts: nothing excuses holding it in flight.
      const excused = !healthy || !waitingIds.has(m.MessageId!);
      held.set(m.MessageId!, { receiptHandle: m.ReceiptHandle!, until: this.round + HOLD_ROUNDS, excused });
    }
    return { round: { endpoint, records, inFlight }, response };
  }

  /** The earliest round at which a message of the lane is receivable (its delay over, or its visibility timeout). */
  #earliest(endpoint: string): number | undefined {
    const held = this.#held.get(endpoint)!;
    const rounds = [...this.#stored.get(endpoint)!].map(([id, at]) => held.get(id)?.until ?? at);
    return rounds.length === 0 ? undefined : Math.max(this.round, Math.min(...rounds));
  }

  /** The earliest round at which a lane message becomes receivable again (undefined: the lanes are empty). */
  nextRound(): number | undefined {
    const rounds = [...this.queues.keys()].flatMap((endpoint) => this.#earliest(endpoint) ?? []);
    return rounds.length === 0 ? undefined : Math.min(...rounds);
  }

  /** Per lane, what is left: messages stored, of which held in flight (for the drain's failure message). */
  describe(): string {
    const lanes = [...this.queues.keys()].map((e) => {
      // The rounds at which what is stored becomes receivable: a drain that never reaches them shows it here.
      const at = [...this.#stored.get(e)!.values()].sort((x, y) => x - y);
      const rounds = at.length > 0 ? `, receivable at rounds ${at.slice(0, 10).join(',')}` : '';
      return `${e}: ${this.#stored.get(e)!.size} stored, ${this.#held.get(e)!.size} of them held in flight${rounds}`;
    });
    return `round ${this.round}; ${lanes.join('; ')}`;
  }

  async #visibility(url: string, receiptHandles: string[]): Promise<void> {
    for (let at = 0; at < receiptHandles.length; at += 10) {
      const entries = receiptHandles
        .slice(at, at + 10)
        .map((handle, i) => ({ Id: String(i), ReceiptHandle: handle, VisibilityTimeout: 0 }));
      await this.sqs.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: url, Entries: entries }));
    }
  }

  async #delete(url: string, stored: Map<string, number>, messages: Message[]): Promise<void> {
    for (let at = 0; at < messages.length; at += 10) {
      const entries = messages.slice(at, at + 10).map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle }));
      await this.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: entries }));
      for (const m of messages.slice(at, at + 10)) stored.delete(m.MessageId!);
    }
  }

  close(): void {
    this.sqs.destroy();
  }
}
