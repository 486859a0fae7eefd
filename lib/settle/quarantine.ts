import {
  type MessageAttributeValue,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { type MessageFailure, sampleFailures } from '../errors';
import { REDRIVE_MARKER } from '../redrive/marker';
import type { Quarantine, QuarantineItem } from '../types';

/** Names of the message attributes a quarantined message carries, besides its original ones. */
export const QUARANTINE_ATTRIBUTES = {
  reason: 'quarantine.reason',
  detail: 'quarantine.detail',
  endpoint: 'quarantine.endpoint',
  status: 'quarantine.status',
  sourceQueue: 'quarantine.sourceQueue',
  messageId: 'quarantine.messageId',
  receiveCount: 'quarantine.receiveCount',
  /** Used instead of the separate attributes when they do not fit next to the originals (a JSON object). */
  combined: 'quarantine',
} as const;

const SQS_MAX_ATTRIBUTES = 10;
const SQS_MAX_BATCH_ENTRIES = 10;
/** SendMessageBatch refuses a request whose messages (bodies and attributes) add up to more than this. */
const SQS_MAX_BATCH_BYTES = 1_048_576;
const MAX_DETAIL_CHARS = 1_000;

export type QuarantineFailure = MessageFailure;

/** Nothing could be quarantined; every record stays on its source queue and is reported failed. */
export class QuarantineError extends Error {
  override readonly name = 'QuarantineError';
  constructor(
    readonly queueUrl: string,
    readonly failures: QuarantineFailure[],
    options?: { cause?: unknown },
  ) {
    super(
      `could not send ${failures.length} record(s) to the quarantine queue ${queueUrl} (${sampleFailures(failures)}); they stay on the ` +
        'source queue: check QUARANTINE_QUEUE_URL, that the queue exists and that the function may sqs:SendMessage to it',
      options,
    );
  }
}

/** Attributes the function itself sets on what it sends (lib/lanes: `ingest.lane`, `ingest.lane.body`). */
const isOwnAttribute = (name: string): boolean => name.startsWith('ingest.');

export function isQuarantineAttribute(name: string): boolean {
  return name === QUARANTINE_ATTRIBUTES.combined || name.startsWith(`${QUARANTINE_ATTRIBUTES.combined}.`);
}

/** Why a message is in the quarantine queue, read back from the attributes `quarantineAttributes` wrote. */
export interface QuarantineReasons {
  reason: string;
  detail?: string;
  endpoint?: string;
  status?: string;
  sourceQueue?: string;
  messageId?: string;
  receiveCount?: string;
}

/** The reasons of a quarantined message (separate `quarantine.*` attributes or the combined JSON); else undefined. */
export function readQuarantineAttributes(
  attributes: Record<string, MessageAttributeValue> | undefined,
): QuarantineReasons | undefined {
  const values: Record<string, string> = {};
  const combined = attributes?.[QUARANTINE_ATTRIBUTES.combined]?.StringValue;
  if (combined) {
    try {
      const parsed: unknown = JSON.parse(combined);
      if (typeof parsed === 'object' && parsed !== null) {
        for (const [key, value] of Object.entries(parsed)) if (typeof value === 'string') values[key] = value;
      }
    } catch {
      // Not written by us: only the separate attributes count.
    }
  }
  for (const [key, name] of Object.entries(QUARANTINE_ATTRIBUTES)) {
    const value = attributes?.[name]?.StringValue;
    if (key !== 'combined' && value) values[key] = value;
  }
  const { reason, ...rest } = values;
  return reason ? { reason, ...rest } : undefined;
}

/** Lambda's record attributes ({ stringValue, binaryValue: base64, dataType }) in the SDK's shape. */
export function toSdkAttributes(record: SQSRecord): Record<string, MessageAttributeValue> {
  const attributes: Record<string, MessageAttributeValue> = {};
  for (const [name, value] of Object.entries(record.messageAttributes ?? {})) {
    // A previous quarantine's reasons are replaced, not stacked, when a redriven message is quarantined again; the
    // redrive marker is not kept either (quarantine.* marks the message as a redelivery), so it never takes the place
    // of one of the producer's own attributes.
    if (isQuarantineAttribute(name) || name === REDRIVE_MARKER) continue;
    const converted: MessageAttributeValue = { DataType: value.dataType };
    if (value.stringValue !== undefined && value.stringValue !== null) converted.StringValue = value.stringValue;
    if (value.binaryValue !== undefined && value.binaryValue !== null) {
      converted.BinaryValue = Buffer.from(value.binaryValue, 'base64');
    }
    // String/BinaryListValues are reserved by SQS and never set on real messages.
    attributes[name] = converted;
  }
  return attributes;
}

function reasonAttributes(item: QuarantineItem): Record<string, string> {
  const { record } = item;
  const reasons: Record<string, string> = {
    [QUARANTINE_ATTRIBUTES.reason]: item.reason,
    [QUARANTINE_ATTRIBUTES.messageId]: record.messageId,
    [QUARANTINE_ATTRIBUTES.sourceQueue]: record.eventSourceARN,
    [QUARANTINE_ATTRIBUTES.receiveCount]: record.attributes.ApproximateReceiveCount,
  };
  if (item.endpoint) reasons[QUARANTINE_ATTRIBUTES.endpoint] = item.endpoint;
  if (item.status !== undefined) reasons[QUARANTINE_ATTRIBUTES.status] = String(item.status);
  // SQS refuses empty attribute values.
  if (item.detail) reasons[QUARANTINE_ATTRIBUTES.detail] = item.detail;
  // Details quote event content (e.g. an extension's name): every value must be one SQS accepts.
  for (const [name, value] of Object.entries(reasons)) reasons[name] = sqsAttributeText(value, MAX_DETAIL_CHARS);
  return reasons;
}

const asString = (value: string): MessageAttributeValue => ({ DataType: 'String', StringValue: value });

// SQS accepts only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF in attribute values.
const SQS_DISALLOWED = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** Text SQS accepts as an attribute value: other characters (and lone surrogates) become U+FFFD; cut on code points. */
export function sqsAttributeText(value: string, maxCodePoints: number): string {
  const clean = value.replace(SQS_DISALLOWED, '\uFFFD');
  if (clean.length <= maxCodePoints) return clean;
  return Array.from(clean).slice(0, maxCodePoints).join('');
}

/**
 * The message attributes of a quarantined message. SQS allows 10 per message: the reasons go in separate
 * `quarantine.*` attributes when they fit next to the originals; otherwise they are folded into one `quarantine`
 * JSON attribute, and if the originals alone fill all 10 slots, the last ones (in their original order) are left
 * out and named in that JSON under `droppedAttributes`, so the message is never refused for having too many.
 */
export function quarantineAttributes(item: QuarantineItem): Record<string, MessageAttributeValue> {
  const originals = toSdkAttributes(item.record);
  const reasons = reasonAttributes(item);
  const names = Object.keys(originals);
  if (names.length + Object.keys(reasons).length <= SQS_MAX_ATTRIBUTES) {
    const separate: Record<string, MessageAttributeValue> = { ...originals };
    for (const [name, value] of Object.entries(reasons)) separate[name] = asString(value);
    return separate;
  }
  // The function's own (a lane's envelope and gzip'd body: the event itself) are kept before the producer's.
  const ranked = [...names.filter(isOwnAttribute), ...names.filter((name) => !isOwnAttribute(name))];
  const kept = ranked.slice(0, SQS_MAX_ATTRIBUTES - 1);
  const dropped = ranked.slice(SQS_MAX_ATTRIBUTES - 1);
  const combined: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(reasons))
    combined[name.slice(QUARANTINE_ATTRIBUTES.combined.length + 1)] = value;
  if (dropped.length > 0) combined.droppedAttributes = dropped;
  const attributes: Record<string, MessageAttributeValue> = {};
  for (const name of kept) attributes[name] = originals[name]!;
  attributes[QUARANTINE_ATTRIBUTES.combined] = asString(JSON.stringify(combined));
  return attributes;
}

/** The bytes SQS counts against its size limits: body plus each attribute's name, type and value. */
export function entrySize(entry: SendMessageBatchRequestEntry): number {
  let size = Buffer.byteLength(entry.MessageBody ?? '', 'utf8');
  for (const [name, value] of Object.entries(entry.MessageAttributes ?? {})) {
    size += Buffer.byteLength(name) + Buffer.byteLength(value.DataType ?? '');
    size +=
      value.StringValue !== undefined ? Buffer.byteLength(value.StringValue) : (value.BinaryValue?.byteLength ?? 0);
  }
  return size;
}

/** Groups of at most 10 entries whose sizes add up to at most 1 MiB; an entry too big on its own goes alone. */
export function batchEntries<T extends { entry: SendMessageBatchRequestEntry }>(items: T[]): T[][] {
  const groups: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = entrySize(item.entry);
    if (current.length > 0 && (current.length === SQS_MAX_BATCH_ENTRIES || bytes + size > SQS_MAX_BATCH_BYTES)) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Sends poison records to the quarantine queue: the body byte for byte, the original message attributes and the
 * AWSTraceHeader, plus `quarantine.*` attributes saying why. Up to 10 per SendMessageBatch, calls in parallel.
 * Resolves with the ids that are safely in the queue (entries SQS refused are left out); rejects with a
 * QuarantineError only when none made it.
 */
export function createQuarantine(sqs: SQSClient, queueUrl: string): Quarantine {
  const fifo = queueUrl.endsWith('.fifo');

  const toEntry = (item: QuarantineItem, id: string): SendMessageBatchRequestEntry => {
    const { record } = item;
    const entry: SendMessageBatchRequestEntry = {
      Id: id,
      MessageBody: record.body,
      MessageAttributes: quarantineAttributes(item),
    };
    if (record.attributes.AWSTraceHeader) {
      entry.MessageSystemAttributes = { AWSTraceHeader: asString(record.attributes.AWSTraceHeader) };
    }
    if (fifo) {
      // Keep the source's message group (order within it); a retried send of the same record is deduplicated.
      entry.MessageGroupId = record.attributes.MessageGroupId ?? record.messageId;
      entry.MessageDeduplicationId = record.messageId;
    }
    return entry;
  };

  return {
    async send(items: QuarantineItem[], signal: AbortSignal): Promise<Set<string>> {
      const quarantined = new Set<string>();
      if (items.length === 0) return quarantined;
      const failures: QuarantineFailure[] = [];
      let cause: unknown;
      const prepared = items.map((item, index) => ({ item, entry: toEntry(item, String(index)) }));
      await Promise.all(
        batchEntries(prepared).map(async (batch) => {
          const byId = new Map(batch.map((p) => [p.entry.Id, p.item.record.messageId]));
          try {
            const response = await sqs.send(
              new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: batch.map((p) => p.entry) }),
              { abortSignal: signal },
            );
            for (const ok of response.Successful ?? []) {
              const messageId = ok.Id === undefined ? undefined : byId.get(ok.Id);
              if (messageId) quarantined.add(messageId);
            }
            for (const failed of response.Failed ?? []) {
              const messageId = failed.Id === undefined ? undefined : byId.get(failed.Id);
              if (messageId) failures.push({ messageId, error: `${failed.Code}: ${failed.Message}` });
            }
          } catch (error) {
            cause ??= error;
            for (const p of batch) failures.push({ messageId: p.item.record.messageId, error: describe(error) });
          }
        }),
      );
      if (quarantined.size === 0 && failures.length > 0) throw new QuarantineError(queueUrl, failures, { cause });
      return quarantined;
    },
  };
}
