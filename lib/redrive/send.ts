// The loop's copies: each message routed to its destination and sent there, FIFO order kept.
import {
  type Message,
  type MessageAttributeValue,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { batchEntries } from '../settle/quarantine';
import { describe, SqsCallTimeoutError } from './errors';
import { REDRIVE_MARKER } from './marker';
import { fail, type LoopRun } from './run';
import { quarantineReason, sourceArnOf } from './source';
import { callTimeoutOf, SQS_MAX_ATTRIBUTES, within } from './sqs-call';

/** Copies the message's attributes and marks it as redriven from `from` (when SQS's 10 attributes leave room). */
function attributesOf(run: LoopRun, message: Message): Record<string, MessageAttributeValue> {
  const attributes: Record<string, MessageAttributeValue> = {};
  for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
    const copy: MessageAttributeValue = { DataType: value.DataType };
    if (value.StringValue !== undefined) copy.StringValue = value.StringValue;
    if (value.BinaryValue !== undefined) copy.BinaryValue = value.BinaryValue;
    attributes[name] = copy;
  }
  if (REDRIVE_MARKER in attributes || Object.keys(attributes).length < SQS_MAX_ATTRIBUTES) {
    attributes[REDRIVE_MARKER] = { DataType: 'String', StringValue: run.dlqArn };
  } else if (quarantineReason(message, 'sourceQueue') === undefined) {
    // Quarantined messages are known by their quarantine attributes; the others would look like first deliveries.
    run.unmarked.add(message.MessageId ?? '');
  }
  return attributes;
}

function toEntry(run: LoopRun, message: Message, id: string, fifo: boolean): SendMessageBatchRequestEntry {
  const entry: SendMessageBatchRequestEntry = { Id: id, MessageBody: message.Body ?? '' };
  entry.MessageAttributes = attributesOf(run, message);
  const trace = message.Attributes?.AWSTraceHeader;
  if (trace) entry.MessageSystemAttributes = { AWSTraceHeader: { DataType: 'String', StringValue: trace } };
  if (fifo) {
    entry.MessageGroupId = message.Attributes?.MessageGroupId ?? message.MessageId;
    // Not the DLQ message's own id: a copy whose id reached the destination in the last 5 minutes would be dropped
    // silently, and its original deleted. Ours is the same on a retry of this message and unique across messages
    // (8 + a 36-character UUID: within the 128 alphanumeric and punctuation characters SQS allows).
    entry.MessageDeduplicationId = `redrive-${message.MessageId}`;
  }
  return entry;
}

/** Groups by destination; a message with no known origin fails and stays where it is. */
export async function route(
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

// SQS's answer to a message over the queue's MaximumMessageSize.
const TOO_LARGE = /must be shorter than/i;

/** The entry failed for its size; the marker may be what tipped it over. */
function tooLargeMarked(failed: { Code?: string; Message?: string }): boolean {
  return failed.Code === 'InvalidParameterValue' && TOO_LARGE.test(failed.Message ?? '');
}

/** The entry without the marker it was given, counted unmarked; undefined when it carried none (nothing to drop). */
function withoutMarker(
  run: LoopRun,
  p: { message: Message; entry: SendMessageBatchRequestEntry },
): { message: Message; entry: SendMessageBatchRequestEntry } | undefined {
  const { [REDRIVE_MARKER]: marker, ...rest } = p.entry.MessageAttributes ?? {};
  if (!marker) return undefined;
  // A message that filled its queue before the redrive: moved as it was, not stuck in the DLQ for a marker's bytes.
  if (quarantineReason(p.message, 'sourceQueue') === undefined) run.unmarked.add(p.message.MessageId ?? '');
  return { message: p.message, entry: { ...p.entry, MessageAttributes: rest } };
}

/** Sends one batch to one destination; returns the messages it took. */
async function sendBatch(
  sqs: SQSClient,
  run: LoopRun,
  url: string,
  batch: { message: Message; entry: SendMessageBatchRequestEntry }[],
): Promise<Message[]> {
  try {
    const command = new SendMessageBatchCommand({ QueueUrl: url, Entries: batch.map((p) => p.entry) });
    const response = await within('SendMessageBatch', callTimeoutOf(run.options), (abortSignal) =>
      sqs.send(command, { abortSignal }),
    );
    for (const success of response.Successful ?? []) if (success.MessageId) run.sentIds.add(success.MessageId);
    const ok = new Set((response.Successful ?? []).map((s) => s.Id));
    const sent = batch.filter((p) => ok.has(p.entry.Id)).map((p) => p.message);
    if (sent.length > 0) run.destinations[url] = (run.destinations[url] ?? 0) + sent.length;
    const retry: typeof batch = [];
    for (const failed of response.Failed ?? []) {
      const p = batch.find((candidate) => candidate.entry.Id === failed.Id);
      const unmarked = p && tooLargeMarked(failed) ? withoutMarker(run, p) : undefined;
      if (unmarked) retry.push(unmarked);
      else fail(run, p?.message, `${failed.Code}: ${failed.Message}`);
    }
    return retry.length > 0 ? [...sent, ...(await sendBatch(sqs, run, url, retry))] : sent;
  } catch (error) {
    // No answer: the copy may or may not be in the destination, so the original stays (a duplicate at worst).
    const why =
      error instanceof SqsCallTimeoutError
        ? `not known whether it reached ${url} (${describe(error)}); it stays in the source`
        : describe(error);
    for (const p of batch) fail(run, p.message, why);
    return [];
  }
}

export async function sendAll(sqs: SQSClient, run: LoopRun, byDestination: Map<string, Message[]>): Promise<Message[]> {
  const sent: Message[] = [];
  for (const [url, messages] of byDestination) {
    const fifo = url.endsWith('.fifo');
    const prepared = messages.map((message, index) => ({ message, entry: toEntry(run, message, String(index), fifo) }));
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
