import { SQSClient } from '@aws-sdk/client-sqs';
import { localSqsPort, UsageError } from './cli';
import { DEFAULT_SQS_PORT, LOCAL_ACCOUNT_ID, localSqsClient, SQS_REQUEST_HANDLER } from './sqs-server';

/** Nothing listens where the queue should be. */
export class QueueUnreachableError extends Error {
  override readonly name = 'QueueUnreachableError';
  constructor(queueUrl: string, local: boolean, flag: string) {
    super(
      local
        ? `nothing answers at ${new URL(queueUrl).origin}: start the local stack first (\`npm start\` in another terminal), or pass ${flag}`
        : `cannot reach ${queueUrl}: check the URL and your network`,
    );
  }
}

export function isLoopback(url: URL): boolean {
  return url.hostname === 'localhost' || url.hostname.startsWith('127.') || url.hostname === '[::1]';
}

/** A queue of a running `npm start` (port LOCAL_SQS_PORT, else 9324). */
export function localQueueUrl(env: Record<string, string | undefined>, name: string): string {
  return `http://127.0.0.1:${localSqsPort(env, DEFAULT_SQS_PORT)}/${LOCAL_ACCOUNT_ID}/${name}`;
}

function parseQueueUrl(queueUrl: string, flag: string): URL {
  try {
    return new URL(queueUrl);
  } catch {
    throw new UsageError(
      `${flag} '${queueUrl}' is not a URL: expected https://sqs.<region>.amazonaws.com/<account>/<queue>`,
    );
  }
}

/**
 * An SQS client for a queue URL. Loopback = the local stack: local endpoint, region and dummy credentials, so no AWS
 * variable is needed. Otherwise your usual AWS credentials; an sqs.<region>.amazonaws.com URL names its region.
 */
export function sqsClientFor(queueUrl: string, flag: string): SQSClient {
  const url = parseQueueUrl(queueUrl, flag);
  if (isLoopback(url)) return localSqsClient(url.origin);
  const region = /^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/.exec(url.hostname)?.[1];
  return new SQSClient({ ...(region ? { region } : {}), requestHandler: SQS_REQUEST_HANDLER });
}

/** The error a refused connection surfaces as, rethrown as one that says what to do. */
export function explainUnreachable(error: unknown, queueUrl: string, flag: string): unknown {
  const code = (error as { code?: unknown })?.code;
  const text = error instanceof Error ? `${error.name} ${error.message}` : '';
  if (code !== 'ECONNREFUSED' && !text.includes('ECONNREFUSED')) return error;
  return new QueueUnreachableError(queueUrl, isLoopback(new URL(queueUrl)), flag);
}
