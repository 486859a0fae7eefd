import { readFileSync } from 'node:fs';
import { ReceiveMessageCommand, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { intFlag, parseFlags, pathFlag, rateFlag, runCommand, UsageError } from './cli';
import { createLambdaContext } from './context';
import { startDemoEndpoints } from './demo-endpoints';
import { toSqsRecord } from './event-source';
import { malformedMessages, newRunId, validMessages } from './events';
import { startLocalSqs } from './sqs-server';
import { handlerEnvironment, LOCAL_FUNCTION_TIMEOUT_MS, LOCAL_HANDLER_DEFAULTS, loadRealHandler } from './stack';

const USAGE = `Usage: npm run invoke -- [--count N] [--invalid K] [--event FILE] [--timeout MS] [--fault-rate P]

Invokes the real handler once, the way Lambda would, and prints its answer (batchItemFailures) and what each
endpoint received. The records go through a local SQS queue first, so receipt handles, quarantine and backoff
are real. The handler's JSON logs print as they happen.

  --count N         sample CloudEvents in the batch (default 3)
  --invalid K       malformed messages in the batch (default 1)
  --event FILE      a JSON file instead: an array of message bodies (strings, or objects sent as JSON)
  --timeout MS      function timeout (default ${LOCAL_FUNCTION_TIMEOUT_MS})
  --fault-rate P    share of demo endpoint requests that fail (default 0)

With ENDPOINTS set, the batch is delivered there instead of to three demo endpoints.`;

function bodiesFromFile(path: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new UsageError(`--event ${path}: cannot read it as JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || parsed.length > 10) {
    throw new UsageError(`--event ${path}: expected a JSON array of 1 to 10 message bodies`);
  }
  return parsed.map((body) => (typeof body === 'string' ? body : JSON.stringify(body)));
}

async function invoke(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    count: { type: 'string', short: 'n' },
    invalid: { type: 'string' },
    event: { type: 'string' },
    timeout: { type: 'string' },
    'fault-rate': { type: 'string' },
  });
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const timeoutMs = intFlag(flags, 'timeout', LOCAL_FUNCTION_TIMEOUT_MS, 100, 900_000);
  const file = pathFlag(flags, 'event');
  const run = newRunId();
  const bodies = file
    ? bodiesFromFile(file)
    : [
        ...validMessages(intFlag(flags, 'count', 3, 0, 10), run),
        ...malformedMessages(intFlag(flags, 'invalid', 1, 0, 10), run),
      ].map((message) => message.body);
  if (bodies.length === 0 || bodies.length > 10) throw new UsageError('a batch holds 1 to 10 messages');

  const sqs = await startLocalSqs({ visibilityTimeoutS: Math.max(2, Math.ceil((2 * timeoutMs) / 1000)) });
  const userEndpoints = process.env.ENDPOINTS?.trim() || undefined;
  const demo = userEndpoints ? undefined : await startDemoEndpoints({ rate: rateFlag(flags, 'fault-rate', 0) });
  try {
    const env = handlerEnvironment(
      {
        ENDPOINTS: userEndpoints ?? demo!.envValue,
        QUARANTINE_QUEUE_URL: sqs.dlq.url,
        AWS_ENDPOINT_URL_SQS: sqs.endpoint,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
      },
      { ...LOCAL_HANDLER_DEFAULTS, POWERTOOLS_METRICS_DISABLED: 'true' },
      process.env,
    );
    const handler = await loadRealHandler(env);

    await sqs.client.send(
      new SendMessageBatchCommand({
        QueueUrl: sqs.queue.url,
        Entries: bodies.map((body, i) => ({ Id: String(i), MessageBody: body })),
      }),
    );
    const records: SQSRecord[] = [];
    while (records.length < bodies.length) {
      const { Messages = [] } = await sqs.client.send(
        new ReceiveMessageCommand({
          QueueUrl: sqs.queue.url,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 0,
          AttributeNames: ['All'],
          MessageSystemAttributeNames: ['All'],
          MessageAttributeNames: ['All'],
        }),
      );
      records.push(...Messages.map((message) => toSqsRecord(message, sqs.queue.arn)));
    }
    const event: SQSEvent = { Records: records };
    const context = createLambdaContext({ timeoutMs });
    console.log(`invoking functions/ingest/handler.ts with ${records.length} record(s), timeout ${timeoutMs} ms`);
    const started = Date.now();
    const response = await handler(event, context);
    console.log(`\nanswer after ${Date.now() - started} ms:\n${JSON.stringify(response, null, 2)}`);
    for (const endpoint of demo?.list ?? []) {
      const { accepted, unique, faults } = endpoint.stats;
      console.log(
        `${endpoint.name.padEnd(10)} accepted ${accepted} (${unique} distinct) · faults 5xx ${faults.error} reset ${faults.reset} slow ${faults.slow}`,
      );
    }
    const dlq = await sqs.depth(sqs.dlq.url);
    console.log(`dead-letter queue: ${dlq.visible + dlq.inFlight} message(s)`);
    return 0;
  } finally {
    await demo?.close();
    await sqs.close();
  }
}

runCommand(USAGE, () => invoke(process.argv.slice(2)));
