import type { SQSClient } from '@aws-sdk/client-sqs';

/** An SQS ARN or queue URL that cannot name a queue; the message shows the expected shape. */
export class QueueAddressError extends Error {
  override readonly name = 'QueueAddressError';
  constructor(
    readonly value: string,
    message: string,
  ) {
    super(message);
  }
}

export interface QueueArn {
  partition: string;
  region: string;
  accountId: string;
  name: string;
}

const ARN = /^arn:(aws[a-z-]*):sqs:([a-z0-9-]+):(\d{12}|[0-9a-zA-Z]+):([A-Za-z0-9_-]{1,80}(?:\.fifo)?)$/;

/** Splits `arn:aws:sqs:us-east-1:123456789012:orders` into its parts. */
export function parseQueueArn(arn: string): QueueArn {
  const match = ARN.exec(arn);
  if (!match) {
    throw new QueueAddressError(
      arn,
      `'${arn}' is not an SQS queue ARN: expected arn:aws:sqs:<region>:<account>:<queue>`,
    );
  }
  const [, partition, region, accountId, name] = match as unknown as [string, string, string, string, string];
  return { partition, region, accountId, name };
}

/** The ARN of a queue from its URL (`.../<account>/<name>`) and region, without a call to SQS. */
export function queueArnFromUrl(url: string, region: string, partition = 'aws'): string {
  let parts: string[];
  try {
    parts = new URL(url).pathname.split('/').filter(Boolean);
  } catch {
    throw new QueueAddressError(
      url,
      `'${url}' is not a queue URL: expected https://sqs.<region>.amazonaws.com/<account>/<queue>`,
    );
  }
  const [accountId, name] = parts;
  if (parts.length !== 2 || !accountId || !name) {
    throw new QueueAddressError(
      url,
      `'${url}' is not a queue URL: expected https://sqs.<region>.amazonaws.com/<account>/<queue>`,
    );
  }
  return `arn:${partition}:sqs:${region}:${accountId}:${name}`;
}

/** The base URL the client sends requests to (endpoint option, then AWS_ENDPOINT_URL_SQS / config file), if any. */
async function configuredBase(client: SQSClient): Promise<string | undefined> {
  const config = client.config;
  if (config.endpoint) {
    const { protocol, hostname, port, path } = await config.endpoint();
    return `${protocol}//${hostname}${port ? `:${port}` : ''}${path ?? ''}`;
  }
  if (config.ignoreConfiguredEndpointUrls) return undefined;
  return config.serviceConfiguredEndpoint?.();
}

/**
 * Resolves queue URLs from the `eventSourceARN` of Lambda's SQS records, the way the client would address them:
 * on a custom endpoint (local-aws-sqs, LocalStack, a VPC endpoint) `<endpoint>/<account>/<queue>`, otherwise the
 * regional SQS endpoint of the ARN's own region. Memoised per ARN.
 */
export function createQueueUrlResolver(client: SQSClient): (arn: string) => Promise<string> {
  const cache = new Map<string, Promise<string>>();
  let base: Promise<string | undefined> | undefined;
  const resolve = async (arn: string): Promise<string> => {
    const { region, accountId, name } = parseQueueArn(arn);
    base ??= configuredBase(client);
    const custom = await base;
    if (custom) return `${custom.replace(/\/+$/, '')}/${accountId}/${name}`;
    const config = client.config;
    const endpoint = config.endpointProvider({
      Region: region,
      UseFIPS: await config.useFipsEndpoint(),
      UseDualStack: await config.useDualstackEndpoint(),
    });
    return `${endpoint.url.origin}/${accountId}/${name}`;
  };
  return (arn) => {
    let url = cache.get(arn);
    if (!url) {
      url = resolve(arn);
      // A failed resolution is not cached: the next batch tries again.
      url.catch(() => cache.delete(arn));
      cache.set(arn, url);
    }
    return url;
  };
}
