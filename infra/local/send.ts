import { SQSClient } from '@aws-sdk/client-sqs';
import { SingleBar } from 'cli-progress';
import { intFlag, localSqsPort, parseFlags, runCommand, seconds, stringFlag, UsageError } from './cli';
import { interleave, malformedMessages, newRunId, sendMessages, validMessages } from './events';
import { DEFAULT_QUEUE_NAME, DEFAULT_SQS_PORT, LOCAL_ACCOUNT_ID, localSqsClient } from './sqs-server';

const USAGE = `Usage: npm run send -- --count N [--invalid K] [--queue-url URL] [--parallel P]

  --count N        valid CloudEvents to send (default 100)
  --invalid K      malformed messages mixed in (default 0); the pipeline must dead-letter them
  --queue-url URL  any SQS queue (default: the queue of a running \`npm start\`,
                   http://127.0.0.1:\${LOCAL_SQS_PORT:-${DEFAULT_SQS_PORT}}/${LOCAL_ACCOUNT_ID}/${DEFAULT_QUEUE_NAME});
                   a non-local URL uses your usual AWS credentials and region
  --parallel P     SendMessageBatch calls in flight (default 8)`;

/** Nothing listens where the queue should be. */
export class QueueUnreachableError extends Error {
  override readonly name = 'QueueUnreachableError';
  constructor(queueUrl: string, local: boolean) {
    super(
      local
        ? `nothing answers at ${new URL(queueUrl).origin}: start the local stack first (\`npm start\` in another terminal), or pass --queue-url`
        : `cannot reach ${queueUrl}: check the URL and your network`,
    );
  }
}

function isLoopback(url: URL): boolean {
  return url.hostname === 'localhost' || url.hostname.startsWith('127.') || url.hostname === '[::1]';
}

function clientFor(queueUrl: string): SQSClient {
  let url: URL;
  try {
    url = new URL(queueUrl);
  } catch {
    throw new UsageError(
      `--queue-url '${queueUrl}' is not a URL: expected https://sqs.<region>.amazonaws.com/<account>/<queue>`,
    );
  }
  if (isLoopback(url)) return localSqsClient(url.origin);
  // sqs.<region>.amazonaws.com names its region; otherwise AWS_REGION / the profile decides.
  const region = /^sqs\.([a-z0-9-]+)\.amazonaws\.com/.exec(url.hostname)?.[1];
  return new SQSClient(region ? { region } : {});
}

function unreachable(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  const text = error instanceof Error ? `${error.name} ${error.message}` : '';
  return code === 'ECONNREFUSED' || text.includes('ECONNREFUSED');
}

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
  const queueUrl =
    given ??
    `http://127.0.0.1:${localSqsPort(process.env, DEFAULT_SQS_PORT)}/${LOCAL_ACCOUNT_ID}/${DEFAULT_QUEUE_NAME}`;
  const client = clientFor(queueUrl);

  const run = newRunId();
  const messages = interleave(validMessages(count, run), malformedMessages(invalid, run));
  const bar =
    messages.length >= 500 && process.stderr.isTTY
      ? new SingleBar({ format: 'sending [{bar}] {value}/{total} messages · {eta}s left', hideCursor: true })
      : undefined;
  bar?.start(messages.length, 0);
  const started = Date.now();
  try {
    await sendMessages(client, queueUrl, messages, { parallel, onProgress: (sent) => bar?.update(sent) });
  } catch (error) {
    if (unreachable(error)) throw new QueueUnreachableError(queueUrl, isLoopback(new URL(queueUrl)));
    throw error;
  } finally {
    bar?.stop();
    client.destroy();
  }
  const ids = count === 0 ? '' : ` · event ids ${run}-0 … ${run}-${count - 1}, source urn:ingest-fanout:local-demo`;
  console.log(
    `sent ${count} CloudEvent(s) and ${invalid} malformed message(s) to ${queueUrl} in ${seconds(Date.now() - started)} (run ${run}${ids})`,
  );
  return 0;
}

runCommand(USAGE, () => send(process.argv.slice(2)));
