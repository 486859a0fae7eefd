import { readFileSync } from 'node:fs';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { SingleBar } from 'cli-progress';
import { intFlag, onInterrupt, parseFlags, pathFlag, runCommand, seconds, stringFlag, UsageError } from './cli';
import { interleave, malformedMessages, newRunId, sendMessages, validMessages } from './events';
import { explainUnreachable, localQueueUrl, sqsClientFor } from './queue-address';
import { DEFAULT_QUEUE_NAME, DEFAULT_SQS_PORT, LOCAL_ACCOUNT_ID } from './sqs-server';

const USAGE = `Usage: npm run send -- --count N [--invalid K] [--queue-url URL] [--parallel P]
       npm run send -- --body JSON | --file FILE [--queue-url URL]

  --count N        valid CloudEvents to send (default 100)
  --invalid K      malformed messages mixed in (default 0); the pipeline must dead-letter them
  --queue-url URL  any SQS queue (default: the queue of a running \`npm start\`,
                   http://127.0.0.1:\${LOCAL_SQS_PORT:-${DEFAULT_SQS_PORT}}/${LOCAL_ACCOUNT_ID}/${DEFAULT_QUEUE_NAME});
                   a non-local URL uses your usual AWS credentials and region
  --parallel P     SendMessageBatch calls in flight (default 8)
  --body JSON      send this one message body instead (a CloudEvent you wrote, or anything to see it dead-lettered)
  --file FILE      send the content of FILE as one message body instead`;

/** The one message body of --body or --file, if given. */
function ownBody(flags: Record<string, string | boolean | undefined>): string | undefined {
  // An empty --body (e.g. "$EVENT" unset) must not fall through to sending 100 sample events.
  if (flags.body === '') throw new UsageError('--body is empty: give the message body (SQS refuses an empty one)');
  if (flags.file === '') throw new UsageError('--file is empty: give the path of a file holding the message body');
  const body = stringFlag(flags, 'body');
  const file = pathFlag(flags, 'file');
  if (body === undefined && file === undefined) return undefined;
  if (body !== undefined && file !== undefined) throw new UsageError('give --body or --file, not both');
  if (flags.count !== undefined || flags.invalid !== undefined) {
    throw new UsageError('--body and --file send one message: leave out --count and --invalid');
  }
  if (body !== undefined) return body;
  try {
    return readFileSync(file!, 'utf8');
  } catch (error) {
    throw new UsageError(`--file ${file}: cannot read it (${(error as Error).message})`);
  }
}

async function sendOne(client: SQSClient, queueUrl: string, body: string): Promise<number> {
  try {
    const { MessageId } = await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
    console.log(`sent 1 message (message id ${MessageId}, ${body.length} characters) to ${queueUrl}`);
    return 0;
  } catch (error) {
    throw explainUnreachable(error, queueUrl, '--queue-url');
  } finally {
    client.destroy();
  }
}

async function send(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    count: { type: 'string', short: 'n' },
    invalid: { type: 'string' },
    'queue-url': { type: 'string' },
    parallel: { type: 'string' },
    body: { type: 'string' },
    file: { type: 'string' },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const count = intFlag(flags, 'count', 100, 0, 10_000_000);
  const invalid = intFlag(flags, 'invalid', 0, 0, 10_000_000);
  const parallel = intFlag(flags, 'parallel', 8, 1, 256);
  const given = stringFlag(flags, 'queue-url');
  const queueUrl = given ?? localQueueUrl(process.env, DEFAULT_QUEUE_NAME);
  const body = ownBody(flags);
  const client = sqsClientFor(queueUrl, '--queue-url');
  if (body !== undefined) return sendOne(client, queueUrl, body);

  const run = newRunId();
  const messages = interleave(validMessages(count, run), malformedMessages(invalid, run));
  const bar =
    messages.length >= 500 && process.stderr.isTTY
      ? new SingleBar({ format: 'sending [{bar}] {value}/{total} messages · {eta}s left', hideCursor: true })
      : undefined;
  const interrupt = new AbortController();
  onInterrupt(() => interrupt.abort());
  if (!bar)
    console.log(`sending ${messages.length} message(s) to ${queueUrl} (Ctrl-C stops and says how many were sent)`);
  bar?.start(messages.length, 0);
  const started = Date.now();
  let sent: number;
  try {
    const onProgress = (n: number) => bar?.update(n);
    sent = await sendMessages(client, queueUrl, messages, { parallel, onProgress, signal: interrupt.signal });
  } catch (error) {
    throw explainUnreachable(error, queueUrl, '--queue-url');
  } finally {
    bar?.stop();
    client.destroy();
  }
  if (interrupt.signal.aborted) {
    console.log(
      `interrupted: sent ${sent} of ${messages.length} message(s) (valid and malformed mixed, run ${run}) to ${queueUrl} in ${seconds(Date.now() - started)}`,
    );
    return 130;
  }
  const ids = count === 0 ? '' : ` · event ids ${run}-0 … ${run}-${count - 1}, source urn:ingest-fanout:local-demo`;
  console.log(
    `sent ${count} CloudEvent(s) and ${invalid} malformed message(s) to ${queueUrl} in ${seconds(Date.now() - started)} (run ${run}${ids})`,
  );
  return 0;
}

runCommand(USAGE, () => send(process.argv.slice(2)));
