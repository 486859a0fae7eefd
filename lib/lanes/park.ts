import {
  type MessageAttributeValue,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { errorText } from '../errors';
import { batchEntries, toSdkAttributes } from '../settle/quarantine';
import { fitLaneEntry, LANE_BODY_ATTRIBUTE } from './body';
import { encodeEnvelope, LANE_ATTRIBUTE, type LaneEnvelope, MAX_DELAY_S } from './envelope';

/** One event bound for an endpoint's lane (the endpoint is the envelope's `e`). */
export interface LaneMessage {
  record: SQSRecord;
  envelope: LaneEnvelope;
  delaySeconds: number;
}

/** Per message in order, whether the lane durably holds it; and why some did not go (SQS's codes, errors). */
export interface LaneSendResult {
  parked: boolean[];
  errors: string[];
}

/** Sends events to their endpoints' lanes. */
export type LaneSender = (messages: readonly LaneMessage[], signal: AbortSignal) => Promise<LaneSendResult>;

export function laneQueueUrl(prefix: string, endpoint: string): string {
  return `${prefix}${endpoint}`;
}

/** SQS's limit on message attributes; the lane's own take up to 2 (the envelope, a packed body). */
const SQS_MAX_ATTRIBUTES = 10;
const PRODUCER_ATTRIBUTE_SLOTS = SQS_MAX_ATTRIBUTES - 2;

/** The producer's message attributes, as they came (quarantine and redrive marks dropped), in the slots left. */
function producerAttributes(record: SQSRecord): Record<string, MessageAttributeValue> {
  const own = new Set([LANE_ATTRIBUTE, LANE_BODY_ATTRIBUTE]);
  const entries = Object.entries(toSdkAttributes(record)).filter(([name]) => !own.has(name));
  // A source message may carry 10: the last ones would make SQS refuse the lane message, and park nothing ever.
  return Object.fromEntries(entries.slice(0, PRODUCER_ATTRIBUTE_SLOTS));
}

function toEntry(message: LaneMessage, id: string): SendMessageBatchRequestEntry {
  const { record, envelope } = message;
  const entry: SendMessageBatchRequestEntry = {
    Id: id,
    // Byte for byte: the body is the CloudEvent the endpoint gets later.
    MessageBody: record.body,
    DelaySeconds: Math.min(MAX_DELAY_S, Math.max(0, Math.ceil(message.delaySeconds))),
    MessageAttributes: {
      ...producerAttributes(record),
      [LANE_ATTRIBUTE]: { DataType: 'String', StringValue: encodeEnvelope(envelope) },
    },
  };
  const trace = record.attributes?.AWSTraceHeader;
  if (trace) entry.MessageSystemAttributes = { AWSTraceHeader: { DataType: 'String', StringValue: String(trace) } };
  return fitLaneEntry(entry);
}

/**
 * SendMessageBatch to `prefix + endpoint`, up to 10 per call, calls in parallel. Never throws: an entry SQS refused,
 * a call that failed or was aborted by `signal` parks nothing (false), so the caller keeps the record failed.
 */
export function createLaneSender(sqs: SQSClient, prefix: string): LaneSender {
  return async (messages, signal) => {
    const parked = messages.map(() => false);
    const errors: string[] = [];
    const byLane = new Map<string, { entry: SendMessageBatchRequestEntry; index: number }[]>();
    messages.forEach((message, index) => {
      const url = laneQueueUrl(prefix, message.envelope.e);
      let entry: SendMessageBatchRequestEntry;
      try {
        entry = toEntry(message, String(index));
      } catch (error) {
        // Too large for SQS however packed: this one parks nothing, the rest of the batch still goes.
        errors.push(`${url}: ${errorText(error)}`);
        return;
      }
      const list = byLane.get(url) ?? [];
      list.push({ entry, index });
      byLane.set(url, list);
    });
    const calls = [...byLane].flatMap(([url, prepared]) =>
      batchEntries(prepared).map(async (batch) => {
        try {
          const response = await sqs.send(
            new SendMessageBatchCommand({ QueueUrl: url, Entries: batch.map((p) => p.entry) }),
            { abortSignal: signal },
          );
          for (const ok of response.Successful ?? []) parked[Number(ok.Id)] = true;
          for (const failed of response.Failed ?? []) errors.push(`${url}: ${failed.Code}: ${failed.Message}`);
        } catch (error) {
          // Nothing of this call is known to be in the lane: its records stay failed and come back.
          errors.push(`${url}: ${errorText(error)}`);
        }
      }),
    );
    await Promise.all(calls);
    return { parked, errors };
  };
}
