import { ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { CloudEvent } from '../../lib/event/event';
import { readQuarantineAttributes } from '../../lib/settle/quarantine';
import { DEMO_ID_ATTRIBUTE, type SampleMessage } from './events';
import type { LocalStack } from './stack';

export interface DeadLetter {
  demoId: string;
  /** quarantine.reason when the handler quarantined it; 'redrive' when SQS moved it after too many receives. */
  reason: string;
  /** quarantine.detail, e.g. "mine answered 400". */
  detail?: string;
  count: number;
}

/** Reads what reached the dead-letter queue, hiding each message for 12 h once read so it is counted once. */
export class DlqCollector {
  readonly letters = new Map<string, DeadLetter>();
  /** Messages in the DLQ that are none of ours. */
  unknown = 0;
  readonly #client: SQSClient;
  readonly #url: string;
  readonly #byBody: Map<string, string>;

  constructor(client: SQSClient, dlqUrl: string, sent: SampleMessage[]) {
    this.#client = client;
    this.#url = dlqUrl;
    this.#byBody = new Map(sent.map((message) => [message.body, message.demoId]));
  }

  /** Reads until the DLQ has nothing visible left. */
  async collect(): Promise<void> {
    for (;;) {
      const { Messages = [] } = await this.#client.send(
        new ReceiveMessageCommand({
          QueueUrl: this.#url,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 0,
          VisibilityTimeout: 43_200,
          MessageAttributeNames: ['All'],
        }),
      );
      for (const message of Messages) {
        const attributes = message.MessageAttributes ?? {};
        const demoId = attributes[DEMO_ID_ATTRIBUTE]?.StringValue ?? this.#byBody.get(message.Body ?? '');
        if (!demoId) {
          this.unknown++;
          continue;
        }
        const reasons = readQuarantineAttributes(attributes);
        const letter = this.letters.get(demoId);
        if (letter) letter.count++;
        else {
          const { reason = 'redrive', detail } = reasons ?? {};
          this.letters.set(demoId, { demoId, reason, ...(detail ? { detail } : {}), count: 1 });
        }
      }
      if (Messages.length < 10) return;
    }
  }
}

export interface EndpointTally {
  name: string;
  /** Valid events this endpoint has. */
  delivered: number;
  /** Valid events it does not have (yet). */
  missing: number;
  /** Extra copies of events it already had. */
  duplicates: number;
}

export interface DrainReport {
  drained: boolean;
  elapsedMs: number;
  sent: { valid: number; malformed: number };
  /** Per endpoint, when the demo endpoints are in use (the stack cannot see inside other endpoints). */
  endpoints?: EndpointTally[];
  /** Endpoints the demo cannot look inside (your own receivers, or ENDPOINTS): counted by what the handler did. */
  ownEndpoints?: string[];
  /** Valid events delivered to every endpoint (own endpoints: acknowledged and not dead-lettered). */
  deliveredEverywhere: number;
  /** The valid events dead-lettered without reaching every endpoint, by reason ("rejected-by-endpoint (x answered 400)"). */
  deadLettered: Record<string, number>;
  dlq: {
    /** Malformed messages in the DLQ. */
    malformed: number;
    /** Valid events in the DLQ: SQS gave up on them after too many receives. */
    valid: number;
    /** Put there by the handler's quarantine (the rest came by SQS redrive). */
    quarantined: number;
    redriven: number;
    /** Extra copies of a message already in the DLQ. */
    duplicates: number;
    unknown: number;
  };
  /** Messages still on the source queue or a lane (visible, in flight or delayed). */
  queueLeft: number;
  /** Receives of a message that had been received before (from the event source mapping). */
  redeliveries: number;
  /**
   * Valid events that will never reach every endpoint (dead-lettered, or acknowledged without getting there) and
   * malformed ones acknowledged without reaching the DLQ.
   */
  lost: number;
  /** Still on their way when the report was made (0 once drained). */
  undelivered: number;
}

export interface WaitOptions {
  timeoutMs: number;
  /** How often to look. Default 250 ms. */
  intervalMs?: number;
  onTick?: (report: DrainReport) => void;
  signal?: AbortSignal;
}

/** The endpoints the handler delivers to that are not demo endpoints: their names, or ENDPOINTS's. */
function ownEndpoints(stack: LocalStack): string[] {
  const demo = new Set(stack.demo?.list.map((endpoint) => endpoint.name));
  if (stack.routes) return [...stack.routes.keys()].filter((name) => !demo.has(name));
  if (stack.demo) return [];
  const names = (stack.env.ENDPOINTS ?? '').split(',').map((entry) => entry.split('=')[0]!.trim());
  return names.filter(Boolean).length > 0 ? names.filter(Boolean) : ['ENDPOINTS'];
}

function reasonCounts(letters: DeadLetter[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { reason, detail } of letters) {
    const key =
      reason === 'redrive'
        ? 'out-of-receives (SQS moved it after too many receives)'
        : detail
          ? `${reason} (${detail})`
          : reason;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** Checks whether everything sent has arrived where it belongs: every endpoint, or the DLQ. */
export class DrainWatch {
  readonly #stack: LocalStack;
  readonly #valid: SampleMessage[];
  readonly #malformed: SampleMessage[];
  readonly #collector: DlqCollector;
  readonly #startedAt = Date.now();
  readonly #attributes = new Map<string, CloudEvent>();

  constructor(stack: LocalStack, sent: SampleMessage[]) {
    this.#stack = stack;
    this.#valid = sent.filter((message) => message.valid);
    this.#malformed = sent.filter((message) => !message.valid);
    this.#collector = new DlqCollector(stack.sqs.client, stack.sqs.dlq.url, sent);
  }

  #routed(message: SampleMessage, endpoint: string): boolean {
    const router = this.#stack.routes?.get(endpoint);
    if (!router) return true;
    let attributes = this.#attributes.get(message.demoId);
    if (!attributes) {
      attributes = JSON.parse(message.body) as CloudEvent;
      this.#attributes.set(message.demoId, attributes);
    }
    return router(attributes);
  }

  async check(): Promise<DrainReport> {
    // The queue first: once it is empty, whatever the handler quarantined and SQS redrove is already in the DLQ.
    // The lanes too: an event parked in its endpoint's lane is still on its way, not lost.
    const { sqs, lanes } = this.#stack;
    const depths = await Promise.all(
      [sqs.queue, ...[...lanes.values()].map((lane) => lane.queue)].map((q) => sqs.depth(q.url)),
    );
    await this.#collector.collect();
    const queueLeft = depths.reduce((sum, depth) => sum + depth.visible + depth.inFlight + depth.delayed, 0);
    const letters = this.#collector.letters;
    const validLetters: DeadLetter[] = [];
    const dlq = {
      malformed: 0,
      valid: 0,
      quarantined: 0,
      redriven: 0,
      duplicates: 0,
      unknown: this.#collector.unknown,
    };
    const malformedIds = new Set(this.#malformed.map((message) => message.demoId));
    for (const letter of letters.values()) {
      if (malformedIds.has(letter.demoId)) dlq.malformed++;
      else dlq.valid++;
      if (letter.reason === 'redrive') dlq.redriven++;
      else dlq.quarantined++;
      dlq.duplicates += letter.count - 1;
    }

    const list = this.#stack.demo?.list ?? [];
    const endpoints = list.map((endpoint) => ({ name: endpoint.name, delivered: 0, missing: 0, duplicates: 0 }));
    const own = ownEndpoints(this.#stack);
    let deliveredEverywhere = 0;
    let deadLettered = 0;
    let pending = 0;
    for (const message of this.#valid) {
      let everywhere = true;
      list.forEach((endpoint, i) => {
        // An endpoint whose filter the event does not match neither gets it nor waits for it.
        if (!this.#routed(message, endpoint.name)) return;
        const count = endpoint.count(message.demoId);
        const tally = endpoints[i]!;
        if (count > 0) {
          tally.delivered++;
          tally.duplicates += count - 1;
        } else {
          tally.missing++;
          everywhere = false;
        }
      });
      // Endpoints the demo cannot look inside: a dead-lettered event did not reach them, whatever the others got.
      const unseen = own.some((name) => this.#routed(message, name));
      const letter = letters.get(message.demoId);
      if (letter && (unseen || !everywhere)) {
        deadLettered++;
        validLetters.push(letter);
      } else if (everywhere && (!unseen || (queueLeft === 0 && !letter))) deliveredEverywhere++;
      else pending++;
    }
    const malformedMissing = this.#malformed.filter((message) => !letters.has(message.demoId)).length;
    const drained = queueLeft === 0 && pending === 0 && malformedMissing === 0;
    // With the queue empty nothing more can arrive: what is missing then was acknowledged without getting there.
    const lost = deadLettered + (queueLeft === 0 ? pending + malformedMissing : 0);
    const undelivered = queueLeft === 0 ? 0 : pending + malformedMissing;
    return {
      drained,
      elapsedMs: Date.now() - this.#startedAt,
      sent: { valid: this.#valid.length, malformed: this.#malformed.length },
      ...(list.length > 0 ? { endpoints } : {}),
      ...(own.length > 0 ? { ownEndpoints: own } : {}),
      deliveredEverywhere,
      deadLettered: reasonCounts(validLetters),
      dlq,
      queueLeft,
      redeliveries: this.#stack.eventSource.stats.redelivered,
      lost,
      undelivered,
    };
  }

  /** Polls until drained or the time limit; the last report says which. */
  async waitUntilDrained(options: WaitOptions): Promise<DrainReport> {
    const deadline = Date.now() + options.timeoutMs;
    const interval = options.intervalMs ?? 250;
    for (;;) {
      const report = await this.check();
      options.onTick?.(report);
      if (report.drained) return report;
      if (Date.now() >= deadline || options.signal?.aborted) return report;
      await new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(0, deadline - Date.now()))));
    }
  }
}
