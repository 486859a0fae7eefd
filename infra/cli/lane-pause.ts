// What `npm run endpoint` does to one endpoint's lane: the pause tag, the lane's event source mapping, its counts.
import {
  type EventSourceMappingConfiguration,
  type LambdaClient,
  ListEventSourceMappingsCommand,
  UpdateEventSourceMappingCommand,
} from '@aws-sdk/client-lambda';
import {
  GetQueueAttributesCommand,
  ListQueuesCommand,
  ListQueueTagsCommand,
  type SQSClient,
  TagQueueCommand,
  UntagQueueCommand,
} from '@aws-sdk/client-sqs';
import { MAX_DELAY_S } from '../../lib/lanes/envelope';
import { PAUSED_BY_TAG, PAUSED_TAG } from '../../lib/lanes/pause';

/** The endpoint named has no lane on this stage; the message lists the ones it has. */
export class UnknownEndpointError extends Error {
  override readonly name = 'UnknownEndpointError';
  constructor(endpoint: string, known: readonly string[], where: string) {
    super(
      known.length === 0
        ? `no lanes on ${where}: pausing needs the stage's lanes (a standard stage has them unless its param lanes is ` +
            'false; locally, `npm start` without --no-lanes)'
        : `no endpoint '${endpoint}' on ${where}: its lanes are ${known.join(', ')}`,
    );
  }
}

/** The lane's event source mapping is not there to switch: the stage was not deployed with lanes, or not by us. */
export class MappingNotFoundError extends Error {
  override readonly name = 'MappingNotFoundError';
  constructor(functionName: string, queueArn: string) {
    super(
      `no event source mapping from ${queueArn} to ${functionName}: check --stage and --region, and that the stage ` +
        'was deployed with lanes (the lane is tagged paused all the same)',
    );
  }
}

/** The mapping could not be switched; the message says which state the endpoint is left in and what to do. */
export class MappingSwitchError extends Error {
  override readonly name = 'MappingSwitchError';
  constructor(endpoint: string, enable: boolean, cause: unknown) {
    const why = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(
      enable
        ? `could not enable the lane's event source mapping (${why}): ${endpoint} is still paused (tag kept) and its ` +
            'lane is not read; fix that (lambda:UpdateEventSourceMapping) and run resume again'
        : `could not disable the lane's event source mapping (${why}): ${endpoint} is paused (tagged), but the ` +
            'function keeps receiving its lane and sends each record back every minute; fix that ' +
            '(lambda:UpdateEventSourceMapping) and run pause again',
      { cause },
    );
  }
}

/** Where one endpoint's lane is: its queue, and on AWS the function whose mapping reads it. */
export interface LaneTarget {
  endpoint: string;
  queueUrl: string;
  /** Only on AWS: the mapping to switch off while paused. */
  functionName?: string;
}

export interface Clients {
  sqs: SQSClient;
  lambda?: LambdaClient;
}

/** The lanes of a stage: the queues named `prefix<endpoint>`, by endpoint. */
export async function findLanes(sqs: SQSClient, prefix: string): Promise<Map<string, string>> {
  const lanes = new Map<string, string>();
  let NextToken: string | undefined;
  do {
    const page = await sqs.send(new ListQueuesCommand({ QueueNamePrefix: prefix, MaxResults: 1000, NextToken }));
    for (const url of page.QueueUrls ?? []) lanes.set(url.slice(url.lastIndexOf('/') + 1 + prefix.length), url);
    NextToken = page.NextToken;
  } while (NextToken);
  return lanes;
}

/** The lane of `endpoint` among the stage's, or an error listing those it has. */
export async function findLane(sqs: SQSClient, prefix: string, endpoint: string, where: string): Promise<string> {
  const lanes = await findLanes(sqs, prefix);
  const url = lanes.get(endpoint);
  if (!url) throw new UnknownEndpointError(endpoint, [...lanes.keys()].sort(), where);
  return url;
}

async function queueArn(sqs: SQSClient, queueUrl: string): Promise<string> {
  const { Attributes } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
  );
  return Attributes?.QueueArn ?? '';
}

async function laneMapping(lambda: LambdaClient, functionName: string, arn: string) {
  const { EventSourceMappings = [] } = await lambda.send(
    new ListEventSourceMappingsCommand({ FunctionName: functionName, EventSourceArn: arn }),
  );
  const mapping = EventSourceMappings[0];
  if (!mapping?.UUID) throw new MappingNotFoundError(functionName, arn);
  return mapping as EventSourceMappingConfiguration & { UUID: string };
}

async function switchMapping(clients: Clients, target: LaneTarget, enabled: boolean): Promise<string | undefined> {
  const { lambda } = clients;
  if (!lambda || !target.functionName) return undefined;
  const mapping = await laneMapping(lambda, target.functionName, await queueArn(clients.sqs, target.queueUrl));
  try {
    const command = new UpdateEventSourceMappingCommand({ UUID: mapping.UUID, Enabled: enabled });
    return (await lambda.send(command)).State;
  } catch (error) {
    throw new MappingSwitchError(target.endpoint, enabled, error);
  }
}

/** Tags the lane paused (the function parks the endpoint's events and stops delivering), then stops its mapping. */
export async function pauseLane(clients: Clients, target: LaneTarget, by: string, now = new Date()) {
  const Tags = { [PAUSED_TAG]: now.toISOString(), [PAUSED_BY_TAG]: by };
  await clients.sqs.send(new TagQueueCommand({ QueueUrl: target.queueUrl, Tags }));
  return { mapping: await switchMapping(clients, target, false) };
}

/**
 * Starts the lane's mapping, then untags it (the function delivers again within its 30 s cache): the backlog drains.
 * In this order a failure leaves it paused, never untagged with its lane unread (its events would expire unseen).
 */
export async function resumeLane(clients: Clients, target: LaneTarget) {
  const mapping = await switchMapping(clients, target, true);
  await clients.sqs.send(new UntagQueueCommand({ QueueUrl: target.queueUrl, TagKeys: [PAUSED_TAG, PAUSED_BY_TAG] }));
  return { mapping };
}

export interface LaneStatus {
  endpoint: string;
  queueUrl: string;
  pausedSince?: string;
  pausedBy?: string;
  visible: number;
  delayed: number;
  inFlight: number;
  /**
   * When the lane's events start to expire: nothing re-sends them while it is not read, and each was last sent at most
   * one hop (15 min) before the pause.
   */
  expiresFrom?: string;
  /** On AWS: the mapping's state (Enabled, Disabled, Updating...). */
  mapping?: string;
}

/** The pause tag and the lane's backlog as SQS counts it (approximate), with the mapping's state on AWS. */
export async function laneStatus(clients: Clients, target: LaneTarget): Promise<LaneStatus> {
  const { sqs, lambda } = clients;
  const [{ Tags = {} }, { Attributes = {} }] = await Promise.all([
    sqs.send(new ListQueueTagsCommand({ QueueUrl: target.queueUrl })),
    sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: target.queueUrl,
        AttributeNames: [
          'ApproximateNumberOfMessages',
          'ApproximateNumberOfMessagesDelayed',
          'ApproximateNumberOfMessagesNotVisible',
          'MessageRetentionPeriod',
          'QueueArn',
        ],
      }),
    ),
  ]);
  const status: LaneStatus = {
    endpoint: target.endpoint,
    queueUrl: target.queueUrl,
    visible: Number(Attributes.ApproximateNumberOfMessages ?? 0),
    delayed: Number(Attributes.ApproximateNumberOfMessagesDelayed ?? 0),
    inFlight: Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0),
  };
  if (Tags[PAUSED_TAG]) {
    status.pausedSince = Tags[PAUSED_TAG];
    const since = Date.parse(Tags[PAUSED_TAG]);
    const retentionMs = Number(Attributes.MessageRetentionPeriod) * 1000;
    const from = since + retentionMs - MAX_DELAY_S * 1000;
    if (Number.isFinite(from)) status.expiresFrom = new Date(from).toISOString();
  }
  if (Tags[PAUSED_BY_TAG]) status.pausedBy = Tags[PAUSED_BY_TAG];
  if (lambda && target.functionName && Attributes.QueueArn) {
    const mapping = await laneMapping(lambda, target.functionName, Attributes.QueueArn);
    if (mapping.State) status.mapping = mapping.State;
  }
  return status;
}

/** `status`'s text: paused or not, then the counts. */
export function describeStatus(status: LaneStatus): string {
  const pause = status.pausedSince
    ? `paused since ${status.pausedSince}${status.pausedBy ? ` by ${status.pausedBy}` : ''}`
    : 'not paused';
  const lines = [
    `endpoint ${status.endpoint}: ${pause}`,
    `  lane ${status.queueUrl}`,
    `  backlog: ${status.visible} visible · ${status.delayed} delayed · ${status.inFlight} in flight`,
  ];
  if (status.expiresFrom) lines.push(`  resume before ${status.expiresFrom}: the lane's events start to expire then`);
  if (status.mapping) lines.push(`  event source mapping: ${status.mapping}`);
  // The one state in which a lane never drains and no alarm says so (its backlog-age metric needs a reader).
  if (!status.pausedSince && status.mapping === 'Disabled') {
    lines.push(
      `  not paused, yet nothing reads the lane (mapping Disabled): its events expire unread; run resume ${status.endpoint}`,
    );
  }
  return lines.join('\n');
}
