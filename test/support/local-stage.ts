import { CreateQueueCommand, type SQSClient, TagQueueCommand } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { inject, vi } from 'vitest';
import { PAUSED_TAG } from '../../lib/lanes';
import {
  createLedgerTable,
  createQueue,
  LOCAL_AWS,
  type LocalQueue,
  localDynamoDb,
  localSqs,
  receiveAll,
  receiveAsRecords,
  toLambdaRecord,
  uniqueName,
} from './aws';
import { type AwsCall, LOCAL_ACCOUNT, queueArn, recordAwsCalls } from './aws-calls';
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
// ledger has, hit the deadline. With lanes, a second run parks (one endpoint down, the other paused), serves a lane
// (one event delivered, one exhausting its schedule to the DLQ) and re-delays the paused lane's events.

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
  const resolved = resolve(variables.Variables, stack) as Record<string, string>;
  const lanes = resolved.LANE_QUEUE_URL_PREFIX ? await createLanes(sqs, resolved.LANE_QUEUE_URL_PREFIX) : undefined;
  const env = {
    ...resolved,
    ENDPOINTS: `analytics=${analytics.url},audit=${audit.url}`,
    DEADLINE_MARGIN_MS: '500',
    // Parking after a minute, and one lane attempt of 1 s: the lanes' run parks, serves and exhausts at once.
    ...(lanes ? { LANE_QUEUE_URL_PREFIX: lanes.prefix, PARK_AFTER_S: '60', LANE_RETRY_SCHEDULE: '1' } : {}),
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
      const handler = await freshHandler();
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
    const laneLines = lanes
      ? (await captureOutput(() => runLanes({ sqs, source: queue, lanes, audit, recorder: recorder! }))).lines
      : [];
    const calls = recorder.calls.map((call) => ({
      ...call,
      resources: call.resources.map(lanes?.asTemplate ?? String),
    }));
    return { stack, calls, lines: [...lines, ...laneLines], env };
  } finally {
    recorder?.stop();
    process.env = saved;
    await Promise.all([analytics.close(), audit.close(), stores.close()]);
  }
}

/** A fresh instance of the function: its module state (caches, breakers, pause tags read) starts empty. */
async function freshHandler(): Promise<Handler> {
  vi.resetModules();
  return ((await import('../../functions/ingest/handler')) as { handler: Handler }).handler;
}

/** The lanes' local stand-ins: uniquely named (tests share one local SQS), their ARNs mapped to the template's. */
interface LocalLanes {
  prefix: string;
  queues: Record<'analytics' | 'audit', LocalQueue>;
  /** A local lane ARN as the template names that lane; any other ARN as it is. */
  asTemplate: (arn: string) => string;
}

async function createLanes(sqs: SQSClient, templatePrefix: string): Promise<LocalLanes> {
  const namePrefix = `${uniqueName('stage')}-lane-`;
  const create = async (endpoint: string): Promise<LocalQueue> => {
    const name = `${namePrefix}${endpoint}`;
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: name }));
    return { url: QueueUrl!, arn: queueArn(QueueUrl!), name };
  };
  const [analytics, audit] = await Promise.all([create('analytics'), create('audit')]);
  const queues = { analytics: analytics!, audit: audit! };
  const names = new Map(
    Object.entries(queues).map(([endpoint, q]) => [q.arn, queueArn(`${templatePrefix}${endpoint}`)]),
  );
  return { prefix: audit!.url.slice(0, -'audit'.length), queues, asTemplate: (arn) => names.get(arn) ?? arn };
}

interface LaneRun {
  sqs: SQSClient;
  source: LocalQueue;
  lanes: LocalLanes;
  audit: TestEndpoint;
  recorder: { calls: AwsCall[] };
}

/**
 * Analytics is paused and audit down: a source batch of two events failing for a minute parks both in both lanes;
 * audit's lane delivers one (audit is back for it) and sends the other to the DLQ (its one attempt failed); the
 * paused analytics lane sends its events back to wait.
 */
async function runLanes({ sqs, source, lanes, audit, recorder }: LaneRun): Promise<void> {
  const { analytics: analyticsLane, audit: auditLane } = lanes.queues;
  // The test's own calls (pausing, sending, receiving as the event source) are no calls of the function.
  const unrecorded = async <T>(setup: () => Promise<T>): Promise<T> => {
    const from = recorder.calls.length;
    const result = await setup();
    recorder.calls.splice(from);
    return result;
  };
  const tags = { [PAUSED_TAG]: new Date().toISOString() };
  await unrecorded(() => sqs.send(new TagQueueCommand({ QueueUrl: analyticsLane.url, Tags: tags })));
  audit.respond(() => ({ status: 500 }));
  const received = await unrecorded(() =>
    receiveAsRecords(sqs, source, [
      { body: JSON.stringify(cloudEvent('lane-delivered')) },
      { body: JSON.stringify(cloudEvent('lane-exhausted')) },
    ]),
  );
  const aMinuteAgo = String(Date.now() - 61_000);
  const failingSince = (r: SQSRecord) => ({
    ...r,
    attributes: { ...r.attributes, ApproximateFirstReceiveTimestamp: aMinuteAgo, SentTimestamp: aMinuteAgo },
  });
  // A fresh instance: it reads the pause tag now, not the answer the first run cached.
  const handler = await freshHandler();
  const parked = await handler(sqsEvent(received.map(failingSince)), lambdaContext());
  if (parked.batchItemFailures.length > 0) throw new Error('test setup: the source batch did not park both events');
  // Both lanes' messages as their event sources receive them (audit's once their 1 s delay is over: due), then served
  // one lane after the other, so only the function's calls are recorded.
  const receive = async (lane: LocalQueue) => {
    const messages = await receiveAll(sqs, lane.url, { max: 2, waitTimeSeconds: 3 });
    if (messages.length !== 2) throw new Error(`test setup: ${lane.name} holds ${messages.length} messages, not 2`);
    return sqsEvent(messages.map((m) => toLambdaRecord(m, lane.arn)));
  };
  const batches = await unrecorded(() => Promise.all([receive(auditLane), receive(analyticsLane)]));
  // Audit is back for one of the two events only.
  audit.respond(({ eventId }) => (eventId === 'lane-delivered' ? { status: 200 } : { status: 500 }));
  for (const batch of batches) {
    if ((await handler(batch, lambdaContext())).batchItemFailures.length === 0) continue;
    throw new Error('test setup: a lane batch was not acknowledged whole');
  }
}
