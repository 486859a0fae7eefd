import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { CreateQueueCommand, DeleteQueueCommand, type SQSClient, UntagQueueCommand } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  describeStatus,
  findLane,
  type LaneTarget,
  laneStatus,
  pauseLane,
  resumeLane,
} from '../../infra/cli/lane-pause';
import { SqsEventSource } from '../../infra/local/event-source';
import { startLocalSqs } from '../../infra/local/sqs-server';
import { laneResources } from '../../infra/stage/lanes';
import { describePermissions, ENDPOINT_CLI_PERMISSIONS } from '../../lib/iam-actions';
import { createIngest, type Ingest, type IngestDeps, loadConfig } from '../../lib/index';
import { createEdges } from '../../lib/ingest/edges';
import { PAUSED_REDELAY_S, PAUSED_TAG } from '../../lib/lanes';
import { localSqs, pollUntil, receiveAll, sendMessages, uniqueName } from '../support/aws';
import { queueArn, recordAwsCalls } from '../support/aws-calls';
import { envWithoutAws, runScript } from '../support/cli';
import { TestEndpoint } from '../support/endpoints';
import { eventRecord, lambdaContext, sqsEvent } from '../support/events';
import { laneRecord } from '../support/lanes';
import { captureLogs } from '../support/logs';

// Pausing one endpoint through its lane's tag, on local SQS: the function's side (source path, lane path) and the CLI.
const NAMES = ['alpha', 'beta'] as const;
type Name = (typeof NAMES)[number];

let sqs: SQSClient;
let endpoints: Record<Name, TestEndpoint>;
const instances: Ingest[] = [];

beforeAll(async () => {
  sqs = localSqs();
  const [alpha, beta] = await Promise.all(NAMES.map(() => TestEndpoint.start()));
  endpoints = { alpha: alpha!, beta: beta! };
});

afterAll(async () => {
  await Promise.all(Object.values(endpoints).map((endpoint) => endpoint.close()));
  sqs.destroy();
});

afterEach(async () => {
  await Promise.all(instances.splice(0).map((instance) => instance.close()));
  for (const endpoint of Object.values(endpoints)) endpoint.reset();
});

/** A fresh lane queue per endpoint, `<prefix><endpoint>`, as a stage with lanes has. */
async function stageLanes(): Promise<{ prefix: string; lane: Record<Name, LaneTarget> }> {
  const prefix = `${uniqueName('pause')}-lane-`;
  const urls = await Promise.all(
    NAMES.map(async (name) => (await sqs.send(new CreateQueueCommand({ QueueName: `${prefix}${name}` }))).QueueUrl!),
  );
  return {
    prefix: urls[0]!.slice(0, -'alpha'.length),
    lane: { alpha: { endpoint: 'alpha', queueUrl: urls[0]! }, beta: { endpoint: 'beta', queueUrl: urls[1]! } },
  };
}

/** One function instance (a cold start: its pause cache is empty), wired as the handler wires it. */
async function instance(prefix: string, client: SQSClient = sqs, deps: IngestDeps = {}): Promise<Ingest> {
  const document = { endpoints: NAMES.map((name) => ({ name, url: endpoints[name].url })) };
  const config = loadConfig({ DELIVERY_MAX_ATTEMPTS: '1', LANE_QUEUE_URL_PREFIX: prefix }, { document, source: 't' });
  const edges = await createEdges(config, { sqs: client });
  const { backoff: _, ...rest } = edges;
  const ingest = createIngest(config, { ...rest, ...deps });
  instances.push(ingest);
  return ingest;
}

const failedIds = (response: SQSBatchResponse) => response.batchItemFailures.map((item) => item.itemIdentifier);
const eventIds = (name: Name) => endpoints[name].received.map((request) => request.eventId).sort();
const bodiesIn = async (lane: LaneTarget) =>
  (await receiveAll(sqs, lane.queueUrl, { visibilityTimeoutS: 300 })).map((m) => JSON.parse(m.Body!).id).sort();

/** A record of `endpoint`'s lane (queues named after `prefix`), due now, as its event source hands it to the function. */
const laneRecordAt = (prefix: string, endpoint: Name, id: string) =>
  laneRecord(`${new URL(prefix).pathname.split('/').pop()}${endpoint}`, endpoint, id);

describe('a paused endpoint (its lane tagged ingest:paused)', () => {
  it('gets no request on the source path: its new events park in its lane at once, the others get them', async () => {
    const { prefix, lane } = await stageLanes();
    await pauseLane({ sqs }, lane.beta, 'test');
    const records = [eventRecord('p-1'), eventRecord('p-2')];
    const response = await (await instance(prefix)).handle(sqsEvent(records), lambdaContext());

    expect(failedIds(response)).toEqual([]);
    expect(eventIds('alpha')).toEqual(['p-1', 'p-2']);
    expect(eventIds('beta')).toEqual([]);
    // Parked without delay: the paused lane holds them until it is resumed.
    expect(await bodiesIn(lane.beta)).toEqual(['p-1', 'p-2']);
    expect(await bodiesIn(lane.alpha)).toEqual([]);
  });

  it('keeps a record failed, with no request, when its lane cannot take the event (one grouped line says why)', async () => {
    const { prefix, lane } = await stageLanes();
    await pauseLane({ sqs }, lane.beta, 'test');
    const { logger, metrics, lines } = captureLogs();
    const ingest = await instance(prefix, sqs, { logger, metrics });
    await ingest.handle(sqsEvent([eventRecord('g-1')]), lambdaContext());
    // The instance keeps beta paused from its cache; the lane is gone, so parking fails.
    await sqs.send(new DeleteQueueCommand({ QueueUrl: lane.beta.queueUrl }));
    const record = eventRecord('g-2');
    const result = await ingest.handle(sqsEvent([record]), lambdaContext());

    expect(failedIds(result)).toEqual([record.messageId]);
    expect(eventIds('beta')).toEqual([]);
    expect(eventIds('alpha')).toEqual(['g-1', 'g-2']);
    expect(lines.find((line) => line.kind === 'paused')).toMatchObject({
      message: 'deliveries not attempted: the endpoint is paused and its lane could not take them',
      endpoint: 'beta',
      messageIds: record.messageId,
    });
    // Not the endpoint failing: no delivery failure counted for it.
    expect(lines.filter((line) => line.message === 'batch processed').at(-1)).toMatchObject({
      failed: 1,
      endpoints: { beta: { delivered: 0, failed: 0 } },
    });
  });

  it('has its lane records sent back delayed and acknowledged, without a request', async () => {
    const { prefix, lane } = await stageLanes();
    await pauseLane({ sqs }, lane.beta, 'test');
    const record = laneRecordAt(prefix, 'beta', 'l-1');
    const response = await (await instance(prefix)).handle(sqsEvent([record]), lambdaContext());

    expect(failedIds(response)).toEqual([]);
    expect(eventIds('beta')).toEqual([]);
    expect(await laneStatus({ sqs }, lane.beta)).toMatchObject({ visible: 0, delayed: 1, inFlight: 0 });
    expect(PAUSED_REDELAY_S).toBe(60);
  });

  it('is delivered to from its lane as soon as resumed, by an instance whose cache still says paused', async () => {
    const { prefix, lane } = await stageLanes();
    await pauseLane({ sqs }, lane.beta, 'test');
    const ingest = await instance(prefix);
    expect(failedIds(await ingest.handle(sqsEvent([laneRecordAt(prefix, 'beta', 'c-1')]), lambdaContext()))).toEqual(
      [],
    );
    await resumeLane({ sqs }, lane.beta);
    // The mapping is enabled again: its batch makes the instance read the tag again instead of re-delaying.
    expect(failedIds(await ingest.handle(sqsEvent([laneRecordAt(prefix, 'beta', 'c-2')]), lambdaContext()))).toEqual(
      [],
    );
    expect(eventIds('beta')).toEqual(['c-2']);
  });

  it('is delivered to again once resumed: a new instance sends its lane record and its new events', async () => {
    const { prefix, lane } = await stageLanes();
    await pauseLane({ sqs }, lane.beta, 'test');
    await resumeLane({ sqs }, lane.beta);
    const ingest = await instance(prefix);
    expect(failedIds(await ingest.handle(sqsEvent([laneRecordAt(prefix, 'beta', 'r-1')]), lambdaContext()))).toEqual(
      [],
    );
    expect(failedIds(await ingest.handle(sqsEvent([eventRecord('r-2')]), lambdaContext()))).toEqual([]);
    expect(eventIds('beta')).toEqual(['r-1', 'r-2']);
    expect(await bodiesIn(lane.beta)).toEqual([]);
  });
});

describe('the local emulator of a paused lane’s event source', () => {
  it('receives nothing while the lane is tagged paused, and drains the backlog once resumed', async () => {
    const { lane } = await stageLanes();
    const got: string[] = [];
    const source = new SqsEventSource({
      client: sqs,
      queue: { url: lane.beta.queueUrl, arn: 'arn:aws:sqs:us-east-1:123456789012:beta' },
      handler: async (event) => {
        got.push(...event.Records.map((record) => record.body));
        return { batchItemFailures: [] };
      },
      pollWaitS: 0,
      disabledByTag: { tag: PAUSED_TAG, checkEveryMs: 20 },
    });
    // Polling, as the local stack's lanes are, when the pause comes: it has served one message and waits for more.
    source.start();
    try {
      await sendMessages(sqs, lane.beta.queueUrl, [{ body: 'b-0' }]);
      await pollUntil('the first message served', async () => (got.length === 1 ? true : undefined));
      await pauseLane({ sqs }, lane.beta, 'test');
      // It notices while waiting on the empty lane (it used to long-poll on, blind to the tag).
      await pollUntil('the pause noticed', async () => (source.disabled ? true : undefined));
      await sendMessages(sqs, lane.beta.queueUrl, [{ body: 'b-1' }, { body: 'b-2' }]);
      const skipped = source.stats.disabledPolls;
      // Several more checks have found the tag: had any poller received, the handler would have the messages.
      await pollUntil('three skipped polls', async () =>
        source.stats.disabledPolls >= skipped + 3 ? true : undefined,
      );
      expect(source.stats.received).toBe(1);
      expect(await laneStatus({ sqs }, lane.beta)).toMatchObject({ visible: 2, inFlight: 0 });

      await resumeLane({ sqs }, lane.beta);
      await pollUntil('the backlog drained', async () => (got.length === 3 ? true : undefined));
      expect(got.sort()).toEqual(['b-0', 'b-1', 'b-2']);
      expect(source.disabled).toBe(false);
    } finally {
      await source.stop();
    }
  });
});

/** Lambda's event source mapping API on loopback (no local Lambda exists): one mapping per lane ARN it is given. */
async function fakeLambda(arns: readonly string[], options: { refuseUpdates?: boolean } = {}) {
  const mappings = arns.map((arn, i) => ({ UUID: `uuid-${i}`, EventSourceArn: arn, State: 'Enabled' }));
  const calls: string[] = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => {
      body += chunk;
    });
    request.on('end', () => {
      const url = new URL(request.url ?? '/', 'http://lambda');
      calls.push(`${request.method} ${url.pathname}${url.search}`);
      response.setHeader('content-type', 'application/json');
      if (request.method === 'GET') {
        const arn = url.searchParams.get('EventSourceArn');
        const found = mappings.filter((m) => m.EventSourceArn === arn);
        return response.end(JSON.stringify({ EventSourceMappings: found }));
      }
      if (options.refuseUpdates) {
        response.statusCode = 403;
        response.setHeader('x-amzn-errortype', 'AccessDeniedException');
        return response.end(JSON.stringify({ Message: 'not authorized to perform: lambda:UpdateEventSourceMapping' }));
      }
      const mapping = mappings.find((m) => url.pathname.endsWith(`/${m.UUID}`));
      if (!mapping) {
        response.statusCode = 404;
        return response.end(JSON.stringify({ Type: 'User', message: 'not found' }));
      }
      mapping.State = JSON.parse(body).Enabled ? 'Enabled' : 'Disabled';
      return response.end(JSON.stringify(mapping));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    mappings,
    calls,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const ENDPOINT_CLI = 'infra/cli/endpoint.ts';

describe('npm run endpoint', () => {
  it('pause, status and resume on a deployed stage: tags the lane and switches its mapping off and on', async () => {
    // The stage's lanes as a deployed stage names them, on local SQS; Lambda's API on loopback.
    const names = ['audit', 'crm'];
    const urls = await Promise.all(
      names.map(
        async (name) =>
          (await sqs.send(new CreateQueueCommand({ QueueName: `ingest-fanout-prod-lane-${name}` }))).QueueUrl!,
      ),
    );
    await resumeLane({ sqs }, { endpoint: 'audit', queueUrl: urls[0]! });
    await sendMessages(sqs, urls[0]!, [{ body: 'waiting-1' }, { body: 'waiting-2' }]);
    const lambda = await fakeLambda(
      names.map((name) => `arn:aws:sqs:us-east-1:123456789012:ingest-fanout-prod-lane-${name}`),
    );
    const env = envWithoutAws({
      AWS_ENDPOINT_URL_SQS: inject('sqsEndpoint'),
      AWS_ENDPOINT_URL_LAMBDA: lambda.endpoint,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    });
    const stage = ['--stage', 'prod', '--region', 'eu-west-1'];
    try {
      const paused = await runScript(ENDPOINT_CLI, ['pause', 'audit', ...stage], env);
      expect(paused).toMatchObject({ code: 0, stderr: '' });
      expect(paused.stdout).toContain('paused audit: its new events park in');
      expect(lambda.mappings.map((m) => m.State)).toEqual(['Disabled', 'Enabled']);
      expect(lambda.calls[0]).toContain('FunctionName=ingest-fanout-prod-ingest');

      const status = await runScript(ENDPOINT_CLI, ['status', 'audit', ...stage], env);
      expect(status.code).toBe(0);
      expect(status.stdout).toMatch(/^endpoint audit: paused since \d{4}-\d\d-\d\dT[\d:.]+Z by \S+$/m);
      expect(status.stdout).toContain('backlog: 2 visible · 0 delayed · 0 in flight');
      // Local SQS keeps a message 4 days, as the stage's laneRetentionS; a waiting one was last sent ≤ 15 min before.
      const since = Date.parse(/paused since (\S+)/.exec(status.stdout)![1]!);
      const expires = new Date(since + 345_600_000 - 900_000).toISOString();
      expect(status.stdout).toContain(`resume before ${expires}: the lane's events start to expire then`);
      expect(status.stdout).toContain('event source mapping: Disabled');

      const resumed = await runScript(ENDPOINT_CLI, ['resume', 'audit', ...stage], env);
      expect(resumed.code).toBe(0);
      expect(lambda.mappings.map((m) => m.State)).toEqual(['Enabled', 'Enabled']);
      const json = await runScript(ENDPOINT_CLI, ['status', 'audit', ...stage, '--json'], env);
      expect(JSON.parse(json.stdout)).toMatchObject({ endpoint: 'audit', visible: 2, mapping: 'Enabled' });
      expect(JSON.parse(json.stdout).pausedSince).toBeUndefined();

      const unknown = await runScript(ENDPOINT_CLI, ['pause', 'billing', ...stage], env);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain(
        "UnknownEndpointError: no endpoint 'billing' on stage prod: its lanes are audit, crm",
      );
    } finally {
      await lambda.close();
    }
  }, 60_000);

  it('--local: pauses a lane of the running local stack (LOCAL_SQS_PORT); no lanes there: says so', async () => {
    const name = uniqueName('e').replace(/-/g, '');
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: `ingest-events-lane-${name}` }));
    const port = new URL(inject('sqsEndpoint')).port;
    const paused = await runScript(ENDPOINT_CLI, ['pause', name, '--local'], envWithoutAws({ LOCAL_SQS_PORT: port }));
    expect(paused.code).toBe(0);
    expect((await laneStatus({ sqs }, { endpoint: name, queueUrl: QueueUrl! })).pausedSince).toBeDefined();

    const empty = await startLocalSqs({ port: 0 });
    try {
      const none = await runScript(
        ENDPOINT_CLI,
        ['status', 'audit', '--local'],
        envWithoutAws({ LOCAL_SQS_PORT: String(empty.port) }),
      );
      expect(none.code).toBe(1);
      expect(none.stderr).toContain('no lanes on http://127.0.0.1:');
      // Lanes are on by default now: the fix is to drop --no-lanes (there is no --lanes to add).
      expect(none.stderr).toContain('`npm start` without --no-lanes');
    } finally {
      await empty.close();
    }
  }, 60_000);

  it('refuses a missing endpoint, a missing target and an unknown command, with the usage', async () => {
    for (const args of [
      ['pause', '--local'],
      ['pause', 'audit'],
      ['stop', 'audit', '--local'],
    ]) {
      const result = await runScript(ENDPOINT_CLI, args, envWithoutAws());
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toContain('Usage: npm run endpoint -- pause|resume|status');
    }
  }, 60_000);
});

describe('permissions from recorded calls', () => {
  it('the function calls on its lanes only what the lanes policy grants (ListQueueTags for the pause)', async () => {
    const { prefix, lane } = await stageLanes();
    // Its own client: the recorder stays on a client it has seen.
    const recorded = localSqs();
    const recorder = recordAwsCalls();
    try {
      await pauseLane({ sqs: recorded }, lane.beta, 'test');
      const ingest = await instance(prefix, recorded);
      await ingest.handle(sqsEvent([eventRecord('i-1')]), lambdaContext());
      await ingest.handle(sqsEvent([laneRecordAt(prefix, 'beta', 'i-2')]), lambdaContext());
    } finally {
      recorder.stop();
    }
    recorded.destroy();
    const laneArns = NAMES.map((name) => queueArn(lane[name].queueUrl));
    const byFunction = recorder.calls.filter(
      (call) => call.resources.some((arn) => laneArns.includes(arn)) && call.operation !== 'TagQueue',
    );
    const stage = {
      lanes: true,
      service: 's',
      stage: 't',
      timeoutS: 30,
      windowS: 0,
      laneRetentionS: 345_600,
      endpoints: [{ name: 'beta', id: 'Beta', laneConcurrency: 2 }],
    };
    const policy = laneResources(stage).IngestLanesPolicy!.Properties.PolicyDocument as {
      Statement: { Action: string[] }[];
    };
    const granted = policy.Statement.flatMap((statement) => statement.Action);
    const used = [...new Set(byFunction.map((call) => call.action))].sort();
    expect(used).toEqual(['sqs:ListQueueTags', 'sqs:SendMessage']);
    expect(used.filter((action) => !granted.includes(action))).toEqual([]);
  });

  // Hostile review (rev9): resume untagged the lane before enabling its mapping; when enabling failed, the endpoint
  // read as resumed (status: not paused) while nothing read its lane, quietly, until its events expired.
  it('pause or resume that cannot switch the mapping leaves the endpoint paused (tag kept), and says so', async () => {
    const queueName = 'ingest-fanout-deny-lane-audit';
    const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: queueName }))).QueueUrl!;
    const lambda = await fakeLambda([`arn:aws:sqs:us-east-1:123456789012:${queueName}`], { refuseUpdates: true });
    const client = new LambdaClient({
      endpoint: lambda.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    const target = { endpoint: 'audit', queueUrl, functionName: 'ingest-fanout-deny-ingest' };
    try {
      // A pause that cannot disable it is in effect all the same (tagged), and the error says what that costs.
      await expect(pauseLane({ sqs, lambda: client }, target, 'test')).rejects.toThrow(
        /audit is paused \(tagged\).*sends each record back every minute/,
      );
      await expect(resumeLane({ sqs, lambda: client }, target)).rejects.toThrow(
        /audit is still paused \(tag kept\).*run resume again/,
      );
      expect((await laneStatus({ sqs }, target)).pausedSince).toBeDefined();
      // Not paused with the mapping off (switched by hand, or an older CLI's failed resume): status must say so.
      await sqs.send(new UntagQueueCommand({ QueueUrl: queueUrl, TagKeys: [PAUSED_TAG] }));
      lambda.mappings[0]!.State = 'Disabled';
      const text = describeStatus(await laneStatus({ sqs, lambda: client }, target));
      expect(text).toContain('not paused, yet nothing reads the lane (mapping Disabled)');
      expect(text).toContain('run resume');
    } finally {
      client.destroy();
      await lambda.close();
    }
  });

  it('npm run endpoint calls exactly what its --help lists', async () => {
    const url = (await sqs.send(new CreateQueueCommand({ QueueName: 'ingest-fanout-iam-lane-audit' }))).QueueUrl!;
    const lambda = await fakeLambda(['arn:aws:sqs:us-east-1:123456789012:ingest-fanout-iam-lane-audit']);
    const client = new LambdaClient({
      endpoint: lambda.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    const recorded = localSqs();
    const recorder = recordAwsCalls();
    try {
      const queueUrl = await findLane(recorded, 'ingest-fanout-iam-lane-', 'audit', 'stage iam');
      const target = { endpoint: 'audit', queueUrl, functionName: 'ingest-fanout-iam-ingest' };
      await pauseLane({ sqs: recorded, lambda: client }, target, 'test');
      await laneStatus({ sqs: recorded, lambda: client }, target);
      await resumeLane({ sqs: recorded, lambda: client }, target);
    } finally {
      recorder.stop();
      recorded.destroy();
      client.destroy();
      await lambda.close();
    }
    expect(url).toBeDefined();
    const listed = ENDPOINT_CLI_PERMISSIONS.flatMap((p) => p.actions).sort();
    expect([...new Set(recorder.calls.map((call) => call.action))].sort()).toEqual(listed);
    const help = await runScript(ENDPOINT_CLI, ['--help'], envWithoutAws());
    expect(help.stdout).toContain(`Required permissions (IAM):\n${describePermissions(ENDPOINT_CLI_PERMISSIONS)}`);
  }, 30_000);
});
