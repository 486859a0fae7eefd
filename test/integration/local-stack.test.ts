import { GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { afterEach, describe, expect, it } from 'vitest';
import { type LocalStack, startLocalStack } from '../../infra/local/stack';

let stack: LocalStack | undefined;

afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

/** Resolves with the first batch the handler gets. */
function firstBatch(): { handler: (event: SQSEvent) => Promise<undefined>; batch: Promise<SQSEvent> } {
  let resolve!: (event: SQSEvent) => void;
  const batch = new Promise<SQSEvent>((done) => {
    resolve = done;
  });
  return {
    handler: async (event) => {
      resolve(event);
      return undefined;
    },
    batch,
  };
}

describe('the local stack runs one lane per endpoint', () => {
  it('creates the lanes where LANE_QUEUE_URL_PREFIX points, redriven to the DLQ, each consumed by the handler', async () => {
    const { handler, batch } = firstBatch();
    stack = await startLocalStack({
      handler,
      endpoints: 'alpha=http://127.0.0.1:9/a,beta-x=http://127.0.0.1:9/b',
      pollWaitS: 0,
      baseEnv: { PARK_AFTER_S: '60' },
    });
    const { sqs, env, lanes } = stack;
    expect([...lanes.keys()]).toEqual(['alpha', 'beta-x']);
    const prefix = env.LANE_QUEUE_URL_PREFIX ?? '';
    for (const [name, lane] of lanes) {
      // The contract with the function: the lane URL is the prefix and the endpoint name.
      expect(lane.queue.url).toBe(`${prefix}${name}`);
      const { Attributes } = await sqs.client.send(
        new GetQueueAttributesCommand({ QueueUrl: lane.queue.url, AttributeNames: ['RedrivePolicy'] }),
      );
      expect(JSON.parse(Attributes?.RedrivePolicy ?? '{}')).toMatchObject({
        deadLetterTargetArn: sqs.dlq.arn,
        maxReceiveCount: sqs.maxReceiveCount,
      });
    }
    // The user's PARK_AFTER_S wins over the local default.
    expect(env.PARK_AFTER_S).toBe('60');

    await sqs.client.send(new SendMessageCommand({ QueueUrl: `${prefix}beta-x`, MessageBody: 'parked' }));
    const [record] = (await batch).Records;
    expect(record?.body).toBe('parked');
    // The function tells a lane batch by its queue name: the prefix's name followed by the endpoint.
    const prefixName = new URL(prefix).pathname.split('/').pop();
    expect(record?.eventSourceARN.split(':').pop()).toBe(`${prefixName}beta-x`);
    expect(lanes.get('beta-x')?.eventSource.stats.received).toBe(1);
  });

  it('parks after 5 s by default, and names the lanes of the demo endpoints', async () => {
    stack = await startLocalStack({ handler: async () => undefined, baseEnv: {} });
    expect(stack.env.PARK_AFTER_S).toBe('5');
    expect([...stack.lanes.keys()].sort()).toEqual(stack.demo?.list.map((endpoint) => endpoint.name).sort());
  });
});
