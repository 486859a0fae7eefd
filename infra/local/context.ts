import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { LOCAL_ACCOUNT_ID, LOCAL_REGION } from './sqs-server';

export interface LambdaContextOptions {
  functionName?: string;
  /** The function's configured timeout: getRemainingTimeInMillis counts down from it. */
  timeoutMs: number;
  memoryLimitInMB?: number;
  region?: string;
  accountId?: string;
  awsRequestId?: string;
  /** When the invocation started (ms since the epoch); now by default. */
  startedAt?: number;
}

/** The error Lambda's deprecated callback-style context methods would raise in an async handler. */
export class DeprecatedContextMethodError extends Error {
  override readonly name = 'DeprecatedContextMethodError';
  constructor(method: string) {
    super(`context.${method}() is not supported by async handlers: return (or throw) from the handler instead`);
  }
}

/** A Lambda-like Context for one invocation; its deadline is startedAt + timeoutMs, as Lambda's is. */
export function createLambdaContext(options: LambdaContextOptions): Context {
  const functionName = options.functionName ?? 'ingest-fanout-local-ingest';
  const region = options.region ?? LOCAL_REGION;
  const accountId = options.accountId ?? LOCAL_ACCOUNT_ID;
  const deadline = (options.startedAt ?? Date.now()) + options.timeoutMs;
  const today = new Date().toISOString().slice(0, 10).replaceAll('-', '/');
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:${accountId}:function:${functionName}`,
    memoryLimitInMB: String(options.memoryLimitInMB ?? 1024),
    awsRequestId: options.awsRequestId ?? randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `${today}/[$LATEST]${randomUUID().replaceAll('-', '')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {
      throw new DeprecatedContextMethodError('done');
    },
    fail: () => {
      throw new DeprecatedContextMethodError('fail');
    },
    succeed: () => {
      throw new DeprecatedContextMethodError('succeed');
    },
  };
}
