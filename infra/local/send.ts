import { SingleBar } from 'cli-progress';
import { intFlag, onInterrupt, parseFlags, runCommand, seconds, stringFlag } from './cli';
import { interleave, malformedMessages, newRunId, sendMessages, validMessages } from './events';
import { explainUnreachable, localQueueUrl, sqsClientFor } from './queue-address';
import { DEFAULT_QUEUE_NAME, DEFAULT_SQS_PORT, LOCAL_ACCOUNT_ID } from './sqs-server';

const USAGE = `Usage: npm run send -- --count N [--invalid K] [--queue-url URL] [--parallel P]

  --count N        valid CloudEvents to send (default 100)
  --invalid K      malformed messages mixed in (default 0); the pipeline must dead-letter them
  --queue-url URL  any SQS queue (default: the queue of a running \`npm start\`,
                   http://127.0.0.1:\${LOCAL_SQS_PORT:-${DEFAULT_SQS_PORT}}/${LOCAL_ACCOUNT_ID}/${DEFAULT_QUEUE_NAME});
                   a non-local URL uses your usual AWS credentials and region
  --parallel P     SendMessageBatch calls in flight (default 8)`;

async function send(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    count: { type: 'string', short: 'n' },
    invalid: { type: 'string' },
    'queue-url': { type: 'string' },
    parallel: { type: 'string' },
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
  const client = sqsClientFor(queueUrl, '--queue-url');

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
