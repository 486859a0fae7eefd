// What one loop run has done so far, and which received messages it should move.
import type { Message } from '@aws-sdk/client-sqs';
import { quarantineReason } from './source';
import type { RedriveFailure, RedriveOptions, RedriveSummary } from './types';

/** What one run of the loop has done so far. */
export interface LoopRun {
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
  /** Source message ids sent without the redrive marker: their 10 attributes, or the queue's size limit, left no room for it. */
  unmarked: Set<string>;
}

export type LoopResult = Omit<RedriveSummary, 'remaining' | 'durationMs'>;

export function fail(run: LoopRun, message: Message | undefined, error: string): void {
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
export function eligibleOf(run: LoopRun, messages: Message[]): { eligible: Message[]; movedAlready: Message[] } {
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

export function summaryOf(run: LoopRun, interrupted: boolean, complete: boolean): LoopResult {
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
