import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { createRequestHandler } from 'local-aws-sqs';

export const LOCAL_REGION = 'us-east-1';
export const LOCAL_ACCOUNT_ID = '123456789012';
/** Where `npm start` puts its SQS server unless LOCAL_SQS_PORT says otherwise; `npm run send` looks there. */
export const DEFAULT_SQS_PORT = 9324;
export const DEFAULT_QUEUE_NAME = 'ingest-events';
export const DEFAULT_DLQ_NAME = 'ingest-events-dlq';

/** The local servers accept any signature; the SDK still wants credentials to sign with. */
export const DUMMY_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' } as const;

type SqsService = ReturnType<typeof createRequestHandler>['service'];
type LocalQueueInstance = SqsService['Queues'][number];

/** The embedded SQS server could not listen. */
export class LocalSqsStartError extends Error {
  override readonly name = 'LocalSqsStartError';
  constructor(
    readonly port: number,
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(
      code === 'EADDRINUSE'
        ? `port ${port} on 127.0.0.1 is already in use (another \`npm start\`?): stop it, or choose another port with LOCAL_SQS_PORT=<port> (0 picks a free one)`
        : `the local SQS server could not listen on 127.0.0.1:${port} (${code ?? 'unknown error'})`,
      options,
    );
  }
}

export interface LocalSqsOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  queueName?: string;
  dlqName?: string;
  /** The source queue's visibility timeout: how long a failed or unanswered batch stays hidden. */
  visibilityTimeoutS?: number;
  /** Receives before SQS moves a message to the dead-letter queue. */
  maxReceiveCount?: number;
}

export interface QueueDepth {
  /** Messages a ReceiveMessage could return now. */
  visible: number;
  /** Received and not yet deleted or returned. */
  inFlight: number;
  /** Sent with a delay that has not passed. */
  delayed: number;
}

export interface LocalQueue {
  name: string;
  url: string;
  arn: string;
}

export interface LocalSqs {
  /** Base URL for AWS_ENDPOINT_URL_SQS, e.g. http://127.0.0.1:9324 */
  endpoint: string;
  port: number;
  queue: LocalQueue;
  dlq: LocalQueue;
  maxReceiveCount: number;
  /** A client pointed at this server with dummy credentials. */
  client: SQSClient;
  depth(queueUrl: string): Promise<QueueDepth>;
  /**
   * Creates one lane queue per endpoint, `<queue name>-lane-<endpoint>`, with the source queue's visibility timeout and
   * redrive to the DLQ. The lane URL is `prefix` + endpoint, as LANE_QUEUE_URL_PREFIX promises the function.
   */
  createLanes(endpoints: readonly string[]): Promise<LocalLanes>;
  close(): Promise<void>;
}

export interface LocalLanes {
  /** The URL every lane's URL starts with; the endpoint name follows. */
  prefix: string;
  byEndpoint: Map<string, LocalQueue>;
}

/** Lane queue names: the source queue's name, this, then the endpoint (`ingest-events-lane-audit`). */
export const LANE_INFIX = '-lane-';

/**
 * Per attempt: a stalled connection fails instead of hanging the tool. The idle limit is above SQS's longest long
 * poll (20 s) plus a margin; without throwOnRequestTimeout the SDK only logs a warning when it passes.
 */
export const SQS_REQUEST_HANDLER = { connectionTimeout: 5_000, requestTimeout: 25_000, throwOnRequestTimeout: true };

/** An SQS client for a local (or any) endpoint with dummy credentials and no SDK retries unless asked. */
export function localSqsClient(endpoint: string, maxAttempts = 3): SQSClient {
  return new SQSClient({
    endpoint,
    region: LOCAL_REGION,
    credentials: DUMMY_CREDENTIALS,
    maxAttempts,
    requestHandler: SQS_REQUEST_HANDLER,
  });
}

/** local-aws-sqs receipt handles are base64 of `<uuid>{"date":…,"MessageId":…,"QueueName":…}`. */
function messageIdOfReceiptHandle(handle: string): string | undefined {
  try {
    const text = Buffer.from(handle, 'base64').toString('utf8');
    const parsed: unknown = JSON.parse(text.slice(text.indexOf('{')));
    if (
      typeof parsed === 'object' &&
      parsed !== null &&
      'MessageId' in parsed &&
      typeof parsed.MessageId === 'string'
    ) {
      return parsed.MessageId;
    }
  } catch {
    // Not one of ours: leave the count alone.
  }
  return undefined;
}

interface StoredMessage {
  record: { MessageId: string; attributes: Record<string, string> };
}

/**
 * local-aws-sqs 2.0.2 counts every ChangeMessageVisibility as a receive, so a message the handler backs off twice
 * would be dead-lettered after 3 real receives instead of 5. SQS does not count visibility changes: undo the extra
 * count on the stored message right after the change.
 */
export function countReceivesLikeSqs(queue: LocalQueueInstance): void {
  const stored = new Map<string, StoredMessage>();
  const newRecord = queue.newRecord;
  queue.newRecord = (message: Record<string, unknown>, delay?: number) => {
    const created = newRecord(message, delay) as StoredMessage;
    stored.set(created.record.MessageId, created);
    return created;
  };
  const remove = queue.delete.bind(queue);
  queue.delete = (receiptHandle: string) => {
    const deleted = remove(receiptHandle);
    const id = messageIdOfReceiptHandle(receiptHandle);
    if (deleted && id) stored.delete(id);
    return deleted;
  };
  const changeVisibility = queue.changeVisibility.bind(queue);
  queue.changeVisibility = (receiptHandle: string, visibilityTimeout: string) => {
    const changed = changeVisibility(receiptHandle, visibilityTimeout);
    const id = messageIdOfReceiptHandle(receiptHandle);
    const message = id ? stored.get(id) : undefined;
    if (changed && message) {
      const count = Number(message.record.attributes.ApproximateReceiveCount);
      if (count > 1) message.record.attributes.ApproximateReceiveCount = String(count - 1);
    }
    return changed;
  };
}

async function listen(server: http.Server, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) =>
      reject(new LocalSqsStartError(port, error.code, { cause: error }));
    server.once('error', onError);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', onError);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

async function describe(client: SQSClient, url: string, name: string): Promise<LocalQueue> {
  const attributes = await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  return { name, url, arn: attributes.Attributes?.QueueArn ?? '' };
}

/** Reads a queue's depth. local-aws-sqs counts in-flight messages in ApproximateNumberOfMessages too. */
export async function queueDepth(client: SQSClient, queueUrl: string): Promise<QueueDepth> {
  const { Attributes = {} } = await client.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: [
        'ApproximateNumberOfMessages',
        'ApproximateNumberOfMessagesNotVisible',
        'ApproximateNumberOfMessagesDelayed',
      ],
    }),
  );
  const total = Number(Attributes.ApproximateNumberOfMessages ?? 0);
  const inFlight = Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0);
  const delayed = Number(Attributes.ApproximateNumberOfMessagesDelayed ?? 0);
  return { visible: Math.max(0, total - inFlight), inFlight, delayed };
}

/**
 * Starts local-aws-sqs on 127.0.0.1 and creates the source queue and its dead-letter queue (redrive after
 * `maxReceiveCount` receives, 5 by default). The dead-letter queue doubles as the quarantine queue, as in production.
 */
export async function startLocalSqs(options: LocalSqsOptions = {}): Promise<LocalSqs> {
  const requestedPort = options.port ?? 0;
  const maxReceiveCount = options.maxReceiveCount ?? 5;
  const { service, requestHandler } = createRequestHandler({
    port: requestedPort,
    hostname: '127.0.0.1',
    region: LOCAL_REGION,
    accountId: LOCAL_ACCOUNT_ID,
    // A restart within a minute re-creates the same queue names.
    emulateQueueCreationLifecycle: false,
  });
  const server = http.createServer((req, res) => void requestHandler(req, res));
  const port = await listen(server, requestedPort);
  // Queue URLs are built from this; with port 0 it must be the port actually bound.
  service.PORT = port;
  const endpoint = `http://127.0.0.1:${port}`;
  const client = localSqsClient(endpoint);

  const dlqName = options.dlqName ?? DEFAULT_DLQ_NAME;
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  const dlqUrl = (await client.send(new CreateQueueCommand({ QueueName: dlqName }))).QueueUrl!;
  const dlq = await describe(client, dlqUrl, dlqName);
  // The source queue and every lane: failed messages hidden for the visibility timeout, then redriven to the DLQ.
  const consumed = {
    VisibilityTimeout: String(options.visibilityTimeoutS ?? 30),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount }),
  };
  const create = async (name: string): Promise<LocalQueue> => {
    const url = (await client.send(new CreateQueueCommand({ QueueName: name, Attributes: consumed }))).QueueUrl!;
    return describe(client, url, name);
  };
  const queue = await create(queueName);
  const patched = new Set<LocalQueueInstance>();
  const countReceives = () => {
    for (const instance of service.Queues.filter((q) => !patched.has(q))) {
      countReceivesLikeSqs(instance);
      patched.add(instance);
    }
  };
  countReceives();
  const createLanes = async (endpoints: readonly string[]): Promise<LocalLanes> => {
    const byEndpoint = new Map<string, LocalQueue>();
    for (const name of endpoints) byEndpoint.set(name, await create(`${queueName}${LANE_INFIX}${name}`));
    countReceives();
    return { prefix: `${endpoint}/${LOCAL_ACCOUNT_ID}/${queueName}${LANE_INFIX}`, byEndpoint };
  };

  return {
    endpoint,
    port,
    queue,
    dlq,
    maxReceiveCount,
    client,
    depth: (url) => queueDepth(client, url),
    createLanes,
    async close() {
      client.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
