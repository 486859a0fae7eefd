import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { inject, vi } from 'vitest';
import { createLedgerTable, createQueue, LOCAL_AWS, localDynamoDb, localSqs, receiveAsRecords } from './aws';
import { type AwsCall, LOCAL_ACCOUNT, recordAwsCalls } from './aws-calls';
import { startCredentialStores } from './credential-stores';
import { TestEndpoint } from './endpoints';
import { cloudEvent, lambdaContext, sqsEvent } from './events';
import type { StackValues } from './iam-check';
import { resolve } from './iam-check';
import { captureOutput } from './output';
import type { Template } from './package-stack';

// A packaged stage run for real on the local stack: local queues and table stand in for the template's resources,
// the function gets the template's environment (resolved against them), and a few batches cover what it does:
// deliver, fail with backoff (HTTP 500, connection reset, 401 after a credential refresh), quarantine invalid and rejected records, skip what the
// ledger has, hit the deadline.

type Handler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

export interface StageRun {
  stack: StackValues;
  /** AWS calls of the handler, in order. */
  calls: AwsCall[];
  /** The JSON lines the handler wrote (Powertools logs and EMF). */
  lines: Record<string, unknown>[];
  /** The environment the function ran with. */
  env: Record<string, string>;
}

/** The template's values for its own resources, with the local stand-ins' names. */
export function localStack(names: { queue: string; dlq: string; table: string }, template: Template): StackValues {
  const region = LOCAL_AWS.region;
  const sqsUrl = (name: string) => `${inject('sqsEndpoint')}/${LOCAL_ACCOUNT}/${name}`;
  const sqsArn = (name: string) => `arn:aws:sqs:${region}:${LOCAL_ACCOUNT}:${name}`;
  const fn = template.Resources.IngestLambdaFunction!.Properties!;
  const logGroup = `/aws/lambda/${String(fn.FunctionName)}`;
  return {
    refs: {
      IngestQueue: sqsUrl(names.queue),
      IngestDeadLetterQueue: sqsUrl(names.dlq),
      DeliveryLedgerTable: names.table,
      IngestLogGroup: logGroup,
      IngestLambdaFunction: String(fn.FunctionName),
    },
    attributes: {
      IngestQueue: { Arn: sqsArn(names.queue), QueueName: names.queue },
      IngestDeadLetterQueue: { Arn: sqsArn(names.dlq), QueueName: names.dlq },
      DeliveryLedgerTable: { Arn: `arn:aws:dynamodb:${region}:${LOCAL_ACCOUNT}:table/${names.table}` },
      IngestLogGroup: { Arn: `arn:aws:logs:${region}:${LOCAL_ACCOUNT}:log-group:${logGroup}:*` },
    },
    pseudo: {
      'AWS::Partition': 'aws',
      'AWS::Region': region,
      'AWS::AccountId': LOCAL_ACCOUNT,
      'AWS::URLSuffix': 'amazonaws.com',
    },
  };
}

/**
 * Runs the stage's function on the local stack through three batches. The template must configure credentials for
 * the endpoints 'analytics' (SSM) and 'audit' (Secrets Manager), as the `secured` variant does.
 */
export async function runStage(template: Template, overrides: Record<string, string> = {}): Promise<StageRun> {
  const sqs = localSqs();
  const [queue, dlq, table] = await Promise.all([
    createQueue(sqs, 'stage-src'),
    createQueue(sqs, 'stage-dlq'),
    createLedgerTable(localDynamoDb(), 'stage-ledger'),
  ]);
  const stack = localStack({ queue: queue.name, dlq: dlq.name, table }, template);
  // A connection reset (the failure line then carries the transport error) and a 401 (the credential is re-read).
  const [analytics, audit] = await Promise.all([
    TestEndpoint.start(({ eventId }) =>
      eventId === 'reset' ? { reset: true } : eventId === 'denied' ? { status: 401 } : { status: 200 },
    ),
    TestEndpoint.start(),
  ]);
  const stores = await startCredentialStores(
    { '/ingest-fanout/dev/analytics-token': 'token-1' },
    { 'ingest-fanout/dev/audit-key': 'hmac-secret' },
  );
  const variables = template.Resources.IngestLambdaFunction!.Properties!.Environment as { Variables: object };
  const env = {
    ...(resolve(variables.Variables, stack) as Record<string, string>),
    ENDPOINTS: `analytics=${analytics.url},audit=${audit.url}`,
    DEADLINE_MARGIN_MS: '500',
    ...overrides,
  };
  const saved = { ...process.env };
  Object.assign(process.env, env, {
    AWS_ENDPOINT_URL_SQS: inject('sqsEndpoint'),
    AWS_ENDPOINT_URL_DYNAMODB: inject('dynamodbEndpoint'),
    AWS_ENDPOINT_URL_SSM: stores.url,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: stores.url,
    // Set by Lambda's runtime; Powertools counts cold starts only with it.
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
  });
  let recorder: ReturnType<typeof recordAwsCalls> | undefined;
  try {
    audit.respond(({ eventId }) =>
      eventId === 'rejected' ? { status: 400 } : eventId === 'slow' ? { hang: true } : { status: 500 },
    );
    const records = await receiveAsRecords(sqs, queue, [
      { body: JSON.stringify(cloudEvent('fails-then-passes')) },
      { body: JSON.stringify(cloudEvent('rejected')) },
      { body: 'not json' },
      { body: JSON.stringify(cloudEvent('reset')) },
      { body: JSON.stringify(cloudEvent('denied')) },
      { body: JSON.stringify(cloudEvent('slow')) },
    ]);
    const record = (text: string) => records.find((r) => r.body.includes(text))!;
    recorder = recordAwsCalls();
    const { result, lines } = await captureOutput(async () => {
      vi.resetModules();
      const { handler } = (await import('../../functions/ingest/handler')) as { handler: Handler };
      const first = ['fails-then-passes', 'rejected', 'not json', 'reset', 'denied'].map(record);
      await handler(sqsEvent(first), lambdaContext());
      // The failed record comes back; audit now accepts it, and the ledger spares analytics a second copy.
      audit.respond(({ eventId }) => (eventId === 'slow' ? { hang: true } : { status: 200 }));
      const again = record('fails-then-passes');
      await handler(
        sqsEvent([{ ...again, attributes: { ...again.attributes, ApproximateReceiveCount: '2' } }]),
        lambdaContext(),
      );
      // An endpoint that never answers: the deadline cuts the delivery off.
      return handler(sqsEvent([record('slow')]), lambdaContext(1_500));
    });
    if (result.batchItemFailures.length !== 1) throw new Error('test setup: the deadline did not cut the batch off');
    return { stack, calls: recorder.calls, lines, env };
  } finally {
    recorder?.stop();
    process.env = saved;
    await Promise.all([analytics.close(), audit.close(), stores.close()]);
  }
}
