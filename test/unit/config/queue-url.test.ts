import { SQSClient } from '@aws-sdk/client-sqs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createQueueUrlResolver,
  parseQueueArn,
  QueueAddressError,
  queueArnFromUrl,
} from '../../../lib/config/queue-url';
import { LOCAL_AWS } from '../../support/aws';

const ARN = 'arn:aws:sqs:eu-west-1:123456789012:orders';

describe('createQueueUrlResolver', () => {
  const saved = process.env.AWS_ENDPOINT_URL_SQS;
  afterEach(() => {
    if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_SQS;
    else process.env.AWS_ENDPOINT_URL_SQS = saved;
  });

  it("puts the queue on the client's custom endpoint (local SQS, LocalStack, a VPC endpoint)", async () => {
    const resolve = createQueueUrlResolver(new SQSClient({ ...LOCAL_AWS, endpoint: 'http://127.0.0.1:4566' }));
    expect(await resolve(ARN)).toBe('http://127.0.0.1:4566/123456789012/orders');
    const withPath = createQueueUrlResolver(new SQSClient({ ...LOCAL_AWS, endpoint: 'http://127.0.0.1:4566/sqs/' }));
    expect(await withPath('arn:aws:sqs:us-east-1:123456789012:orders.fifo')).toBe(
      'http://127.0.0.1:4566/sqs/123456789012/orders.fifo',
    );
  });

  it('honours AWS_ENDPOINT_URL_SQS like the SDK does', async () => {
    process.env.AWS_ENDPOINT_URL_SQS = 'http://127.0.0.1:9324';
    const resolve = createQueueUrlResolver(new SQSClient(LOCAL_AWS));
    expect(await resolve(ARN)).toBe('http://127.0.0.1:9324/123456789012/orders');
  });

  it("otherwise uses the regional SQS endpoint of the ARN's own region and partition", async () => {
    // The suite sets AWS_ENDPOINT_URL (a closed port); a client told to ignore configured endpoints shows the default.
    const resolve = createQueueUrlResolver(new SQSClient({ ...LOCAL_AWS, ignoreConfiguredEndpointUrls: true }));
    expect(await resolve(ARN)).toBe('https://sqs.eu-west-1.amazonaws.com/123456789012/orders');
    expect(await resolve('arn:aws-cn:sqs:cn-north-1:123456789012:orders')).toBe(
      'https://sqs.cn-north-1.amazonaws.com.cn/123456789012/orders',
    );
  });

  it('refuses an ARN that is not an SQS queue, saying what it expected', async () => {
    const resolve = createQueueUrlResolver(new SQSClient(LOCAL_AWS));
    await expect(resolve('arn:aws:sns:us-east-1:123456789012:topic')).rejects.toThrow(QueueAddressError);
    expect(() => parseQueueArn('orders')).toThrow(/expected arn:aws:sqs:<region>:<account>:<queue>/);
  });
});

describe('queue ARNs and URLs', () => {
  it('splits an ARN and builds one back from a URL', () => {
    expect(parseQueueArn(ARN)).toEqual({
      partition: 'aws',
      region: 'eu-west-1',
      accountId: '123456789012',
      name: 'orders',
    });
    expect(queueArnFromUrl('https://sqs.eu-west-1.amazonaws.com/123456789012/orders', 'eu-west-1')).toBe(ARN);
    expect(() => queueArnFromUrl('https://sqs.eu-west-1.amazonaws.com/orders', 'eu-west-1')).toThrow(QueueAddressError);
  });
});
