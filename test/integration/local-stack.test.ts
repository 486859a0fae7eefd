import { GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { afterEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../infra/local/cli';
import { DrainWatch } from '../../infra/local/drain';
import { newRunId, validMessages } from '../../infra/local/events';
import { OutageWindow, parseOutage } from '../../infra/local/outage';
import { type LocalStack, startLocalStack } from '../../infra/local/stack';
import { formatLine, formatPanel } from '../../infra/local/status';
import { loadConfig } from '../../lib/config/config';

let stack: LocalStack | undefined;

afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

/** Polls until the condition holds; fails the test with `what` after the bound. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 4_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

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
      lanes: true,
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

  it('parks after 5 s and retries a lane within minutes by default, and names the lanes of the demo endpoints', async () => {
    stack = await startLocalStack({ handler: async () => undefined, baseEnv: {}, lanes: true });
    expect(stack.env.PARK_AFTER_S).toBe('5');
    // Not the deployed default (about 27.6 h, hours between tries): a demo outage drains minutes after it ends.
    const schedule = loadConfig(stack.env).laneRetrySchedule;
    expect(schedule.reduce((sum, waitS) => sum + waitS, 0)).toBeLessThanOrEqual(600);
    expect(Math.max(...schedule)).toBeLessThanOrEqual(30);
    expect([...stack.lanes.keys()].sort()).toEqual(stack.demo?.list.map((endpoint) => endpoint.name).sort());
  });

  it('runs no lane and sets no LANE_QUEUE_URL_PREFIX unless asked (the CLIs ask unless --no-lanes)', async () => {
    stack = await startLocalStack({ handler: async () => undefined, baseEnv: {} });
    expect(stack.lanes.size).toBe(0);
    expect(stack.env.LANE_QUEUE_URL_PREFIX).toBeUndefined();
  });
});

describe("npm start's panel", () => {
  it("shows each endpoint's backlog: its lane's visible + delayed + in flight", async () => {
    // A handler that fails every record: what the lane's mapping received stays in flight.
    stack = await startLocalStack({
      handler: async (event) => ({
        batchItemFailures: event.Records.map((record) => ({ itemIdentifier: record.messageId })),
      }),
      endpoints: 'audit=http://127.0.0.1:9/a,search=http://127.0.0.1:9/s',
      pollWaitS: 0,
      lanes: true,
    });
    const audit = stack.lanes.get('audit');
    const url = audit?.queue.url ?? '';
    await stack.sqs.client.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'a' }));
    await stack.sqs.client.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'b' }));
    await stack.sqs.client.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'later', DelaySeconds: 60 }));
    await waitFor('both due messages in flight', () => audit?.eventSource.stats.maxInFlight === 2);

    const snapshot = await stack.snapshot();
    const panel = formatPanel(snapshot);
    expect(panel.find((line) => line.includes(' audit '))).toMatch(
      /lane +audit +backlog 3 · visible 0 · delayed 1 · in flight 2 \(max 2\)/,
    );
    expect(panel.find((line) => line.includes(' search '))).toMatch(/lane +search +backlog 0 ·/);
    expect(formatLine(snapshot)).toContain('lane.audit=3 lane.search=0');
  });
});

describe('the demo with lanes', () => {
  it('counts an event waiting in a lane as on its way, not lost, once the source queue is empty', async () => {
    stack = await startLocalStack({ handler: async () => undefined, pollWaitS: 0, lanes: true });
    const [message] = validMessages(1, newRunId());
    await stack.sqs.client.send(
      new SendMessageCommand({
        QueueUrl: stack.lanes.get('audit')?.queue.url,
        MessageBody: message?.body,
        DelaySeconds: 60,
      }),
    );
    const report = await new DrainWatch(stack, message ? [message] : []).check();
    expect(report).toMatchObject({ drained: false, lost: 0, undelivered: 1, queueLeft: 1 });
  });

  it('--outage takes one demo endpoint down (503) until it ends, and reports every queue', async () => {
    expect(() => parseOutage('audit', ['audit'])).toThrow(UsageError);
    expect(() => parseOutage('billing:60s', ['audit', 'search'])).toThrow(
      "--outage billing:60s: no demo endpoint 'billing' (the demo runs audit, search)",
    );
    expect(parseOutage('audit:60s', ['audit'])).toEqual({ endpoint: 'audit', durationS: 60 });

    stack = await startLocalStack({ handler: async () => undefined, pollWaitS: 0, inflightCeiling: 50, lanes: true });
    const url = (name: string) => stack?.demo?.list.find((endpoint) => endpoint.name === name)?.url ?? '';
    const post = (name: string) =>
      fetch(url(name), { method: 'POST', body: JSON.stringify({ id: 'e-1' }) }).then((response) => response.status);
    const outage = new OutageWindow(stack, { endpoint: 'audit', durationS: 3600 });
    expect(await post('audit')).toBeGreaterThanOrEqual(500);
    expect(await post('search')).toBe(202);
    outage.end();
    expect(await post('audit')).toBe(202);
    const report = outage.report();
    expect(report.endpoints.find((endpoint) => endpoint.name === 'search')?.events).toBe(1);
    expect(report.endpoints.find((endpoint) => endpoint.name === 'audit')?.events).toBe(0);
    expect(report.maxInFlight.map((queue) => queue.queue)).toEqual([
      'ingest-events',
      'ingest-events-lane-analytics',
      'ingest-events-lane-audit',
      'ingest-events-lane-search',
    ]);
  });
});
