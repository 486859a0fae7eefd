import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import { iamActionFor } from '../../lib/iam-actions';
import { LOCAL_AWS } from './aws';

/** One AWS API call the code made: its IAM action and the ARNs of the resources it acted on. */
export interface AwsCall {
  service: string;
  operation: string;
  action: string;
  resources: string[];
  input: Record<string, unknown>;
}

/** local-aws-sqs's account; dynalite and the loopback stores have none, so the same one is used for their ARNs. */
export const LOCAL_ACCOUNT = '123456789012';
const SERVICE_OF_CLIENT: Record<string, string> = {
  SQSClient: 'sqs',
  DynamoDBClient: 'dynamodb',
  SSMClient: 'ssm',
  SecretsManagerClient: 'secretsmanager',
  LambdaClient: 'lambda',
};

export function queueArn(queueUrl: string): string {
  const [account, name] = new URL(queueUrl).pathname.split('/').filter(Boolean);
  return `arn:aws:sqs:${LOCAL_AWS.region}:${account}:${name}`;
}

/** The resources a call acts on, as IAM sees them (a secret by its full ARN, as the store answers it). */
function targets(service: string, input: Record<string, unknown>, output: Record<string, unknown>): string[] {
  const region = LOCAL_AWS.region;
  switch (service) {
    case 'sqs':
      if (typeof input.QueueUrl === 'string') return [queueArn(input.QueueUrl)];
      return typeof input.SourceArn === 'string' ? [input.SourceArn] : [];
    case 'dynamodb':
      return Object.keys((input.RequestItems as object) ?? {}).map(
        (table) => `arn:aws:dynamodb:${region}:${LOCAL_ACCOUNT}:table/${table}`,
      );
    case 'ssm':
      return [`arn:aws:ssm:${region}:${LOCAL_ACCOUNT}:parameter/${String(input.Name).replace(/^\//, '')}`];
    case 'secretsmanager':
      return [String(output.ARN)];
    default:
      return [];
  }
}

/**
 * Records every call of every AWS SDK client in this process: a middleware on each client's stack, added by the
 * shared client base class at its first send (clients are created inside the code under test, out of our reach).
 */
export function recordAwsCalls(): { calls: AwsCall[]; stop: () => void } {
  const calls: AwsCall[] = [];
  const base = Object.getPrototypeOf(SQSClient.prototype) as { send: (...args: unknown[]) => unknown };
  for (const client of [DynamoDBClient, SSMClient, SecretsManagerClient]) {
    if (Object.getPrototypeOf(client.prototype) !== base) throw new Error(`${client.name} has another base client`);
  }
  const original = base.send;
  const installed = new WeakSet<object>();
  base.send = function send(this: SQSClient, ...args: unknown[]) {
    if (!installed.has(this)) {
      installed.add(this);
      this.middlewareStack.add(
        (next, context) => async (args) => {
          let output: Record<string, unknown> = {};
          try {
            const result = await next(args);
            output = result.output as unknown as Record<string, unknown>;
            return result;
          } finally {
            // Failed calls too: the role needs the permission whatever the answer.
            const service = SERVICE_OF_CLIENT[String(context.clientName)] ?? String(context.clientName);
            const operation = String(context.commandName).replace(/Command$/, '');
            const input = args.input as Record<string, unknown>;
            const action = iamActionFor(service, operation);
            calls.push({ service, operation, action, resources: targets(service, input, output), input });
          }
        },
        { step: 'initialize', name: 'recordAwsCalls' },
      );
    }
    return original.apply(this, args);
  };
  const stop = () => {
    base.send = original;
  };
  return { calls, stop };
}
