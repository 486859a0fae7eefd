// Where a dead-lettered or quarantined message came from, trusting SQS over producers.
import type { Message } from '@aws-sdk/client-sqs';
import { QUARANTINE_ATTRIBUTES } from '../settle/quarantine';

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
export function quarantineReason(message: Message, key: 'sourceQueue' | 'messageId'): string | undefined {
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
