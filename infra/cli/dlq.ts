// npm run dlq [-- --queue-url URL] [--max N] [--json]: lists what is in the DLQ and why, leaving every message there.
import { GetQueueAttributesCommand, type Message, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { changeVisibility, keepHidden } from '../../lib/redrive';
import { type QuarantineReasons, readQuarantineAttributes } from '../../lib/settle/quarantine';
import { intFlag, parseFlags, runCommand, stringFlag } from '../local/cli';
import { explainUnreachable, localQueueUrl, sqsClientFor } from '../local/queue-address';
import { DEFAULT_DLQ_NAME } from '../local/sqs-server';

const USAGE = `Usage: npm run dlq -- [--queue-url URL] [--max N] [--json]

Lists the messages of a dead-letter / quarantine queue with their quarantine.* reasons, and leaves them there
(each is held while listing, then made visible again at once).
  --queue-url URL  the queue (default: the DLQ of a running \`npm start\`,
                   http://127.0.0.1:\${LOCAL_SQS_PORT:-9324}/123456789012/${DEFAULT_DLQ_NAME});
                   a non-local URL uses your usual AWS credentials (sqs:ReceiveMessage, sqs:ChangeMessageVisibility,
                   sqs:GetQueueAttributes)
  --max N          list at most N messages (default 100)
  --visibility-timeout S
                   how long a listed message stays hidden (default 30; renewed while listing, released at once
                   after): if the command dies, the messages reappear at most this long after
  --json           one JSON object per message instead of the table`;

/** How long a listed message stays hidden if the command dies: renewed at half of it while listing. */
const HOLD_S = 30;
const CALL_TIMEOUT_MS = 30_000;
// Receives in a row that bring back only messages already listed: the listing has come round, so it ends.
const STALE_RECEIVES_MAX = 10;

export interface DlqEntry extends Partial<QuarantineReasons> {
  id: string;
  /** `quarantined` (the handler moved it, with reasons) or `out-of-receives` (SQS moved it after maxReceiveCount). */
  kind: 'quarantined' | 'out-of-receives';
  body: string;
}

function describe(message: Message): DlqEntry {
  const reasons = readQuarantineAttributes(message.MessageAttributes);
  const base = { id: message.MessageId ?? '?', body: message.Body ?? '' };
  if (reasons) return { ...base, kind: 'quarantined', ...reasons };
  const source = message.Attributes?.DeadLetterQueueSourceArn;
  return { ...base, kind: 'out-of-receives', ...(source ? { sourceQueue: source } : {}) };
}

/**
 * Receives into `held` (so what it holds is renewed as it goes) until an empty answer or `max`. A message received
 * again (a renewal that fell behind) is kept once, with its newest receipt handle; 10 answers in a row with nothing new
 * end it (it has come round to what it listed).
 */
async function receiveAll(sqs: SQSClient, queueUrl: string, max: number, holdS: number, held: Map<string, Message>) {
  let nothingNew = 0;
  while (held.size < max && nothingNew < STALE_RECEIVES_MAX) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: Math.min(10, max - held.size),
        VisibilityTimeout: holdS,
        WaitTimeSeconds: 0,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
        // local-aws-sqs returns system attributes only for the older parameter name.
        AttributeNames: ['All'],
      }),
    );
    const before = held.size;
    for (const message of Messages) held.set(message.MessageId ?? message.ReceiptHandle ?? '', message);
    if (Messages.length === 0) break;
    nothingNew = held.size === before ? nothingNew + 1 : 0;
  }
}

/** Lists up to `max` messages, keeping those it holds hidden (renewed) until it has them all, then releases them. */
async function list(sqs: SQSClient, queueUrl: string, max: number, holdS: number): Promise<Message[]> {
  const held = new Map<string, Message>();
  const handles = () => [...held.values()].map((message) => message.ReceiptHandle ?? '');
  const stopKeeping = keepHidden(sqs, queueUrl, holdS, CALL_TIMEOUT_MS, handles);
  try {
    await receiveAll(sqs, queueUrl, max, holdS, held);
  } finally {
    await stopKeeping();
    const unreleased = await changeVisibility(sqs, queueUrl, handles(), 0, CALL_TIMEOUT_MS);
    if (unreleased > 0) console.error(`dlq: ${unreleased} message(s) reappear within ${holdS} s, not at once`);
  }
  return [...held.values()];
}

/** SQS's approximate count of the queue's messages, visible or not, before this listing held any. */
async function approximateTotal(sqs: SQSClient, queueUrl: string): Promise<number> {
  const names = ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] as const;
  const { Attributes = {} } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: [...names] }),
  );
  return names.reduce((n, name) => n + Number(Attributes[name] ?? 0), 0);
}

function table(queueUrl: string, entries: DlqEntry[], total: number): string {
  const byReason = new Map<string, number>();
  for (const e of entries) byReason.set(e.reason ?? e.kind, (byReason.get(e.reason ?? e.kind) ?? 0) + 1);
  const shown =
    total > entries.length ? `showing ${entries.length} of about ${total} message(s)` : `${entries.length} message(s)`;
  const lines = [`${shown} in ${queueUrl} (left in place)`];
  if (entries.length === 0) return lines[0]!;
  lines.push(`  by reason: ${[...byReason].map(([reason, n]) => `${reason} ${n}`).join(' · ')}`);
  for (const e of entries) {
    const where = e.endpoint ? ` ${e.endpoint} ${e.status ?? ''}`.trimEnd() : '';
    const detail = e.detail ? ` · ${e.detail}` : e.kind === 'out-of-receives' ? ' · ran out of receives' : '';
    lines.push(`  ${e.id}  ${e.reason ?? e.kind}${where}${detail}`);
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    'queue-url': { type: 'string' },
    max: { type: 'string' },
    json: { type: 'boolean' },
    'visibility-timeout': { type: 'string' },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const max = intFlag(flags, 'max', 100, 1, 100_000);
  const holdS = intFlag(flags, 'visibility-timeout', HOLD_S, 2, 43_200);
  const queueUrl = stringFlag(flags, 'queue-url') ?? localQueueUrl(process.env, DEFAULT_DLQ_NAME);
  const sqs = sqsClientFor(queueUrl, '--queue-url');
  try {
    const total = await approximateTotal(sqs, queueUrl);
    const messages = await list(sqs, queueUrl, max, holdS);
    const entries = messages.map(describe);
    console.log(flags.json ? entries.map((e) => JSON.stringify(e)).join('\n') : table(queueUrl, entries, total));
    return 0;
  } catch (error) {
    throw explainUnreachable(error, queueUrl, '--queue-url');
  } finally {
    sqs.destroy();
  }
}

runCommand(USAGE, () => main(process.argv.slice(2)));
