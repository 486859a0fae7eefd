// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// The lanes of a standard stage (issue 16, docs: the lanes design): one queue per endpoint where its events wait while
// it is down, consumed by the same function through an event source mapping of its own. FIFO stages get none.
// infra/stage/load.ts checks the stage with laneProblems() and infra/stage/resources.ts merges laneResources() into the
// stack.

import { MAX_DELAY_S } from '../../lib/lanes/envelope';
import { DEFAULT_RETRY_SCHEDULE } from '../../lib/subscription/schema';
import type { Notifications, Resource, Resources, Value } from './cfn';
import type { Stage } from './load';

type StageEndpoint = Stage['endpoints'][number];

/** SQS's limit on a queue name (letters, digits, '-' and '_'). */
export const LANE_QUEUE_NAME_LIMIT = 80;
/** The retry schedule of an endpoint that sets none (s): the function's own, so the checks hold what it waits. */
export const DEFAULT_RETRY_SCHEDULE_S = DEFAULT_RETRY_SCHEDULE;
/** Margin between the last retry and the lane's retention, so a late hop never meets SQS's deletion. */
export const LANE_RETENTION_MARGIN_S = 86_400;
/** Lambda's fewest concurrent instances for an SQS event source (ScalingConfig.MaximumConcurrency). */
export const LANE_MIN_CONCURRENCY = 2;
/** A lane batch: one endpoint, at most 10 records, so one slow record holds up few others. */
export const LANE_BATCH_SIZE = 10;
/** SQS's longest DelaySeconds, as the function uses it: a lane message waiting longer hops (is sent again) this often. */
export const LANE_HOP_S = MAX_DELAY_S;
/** SQS stops a queue at about 120,000 in-flight messages (standard and FIFO): alarm well before. */
export const IN_FLIGHT_ALARM_COUNT = 100_000;

/**
 * The stage param `lanes`: `auto` (the default) gives a standard stage lanes and a FIFO stage none (per-group order);
 * `false` keeps a standard stage on the path without lanes; `true` asks for them. Returns the choice or the refusal.
 */
export function lanesParam(value: unknown, fifo: boolean): { lanes: boolean } | { problem: string } {
  if (value === 'auto' || value === '' || value === undefined) return { lanes: !fifo };
  if (value === false || value === 'false') return { lanes: false };
  if (value !== true && value !== 'true') {
    return {
      problem: `param 'lanes' is ${JSON.stringify(value)}: use auto (standard stages get lanes, FIFO stages none), true or false`,
    };
  }
  if (!fifo) return { lanes: true };
  return {
    problem:
      "param 'lanes' is true on a FIFO stage (param 'fifo' true): FIFO stages have no lanes (per-group order). " +
      'Set lanes to auto or false, or fifo to false',
  };
}

/** `<service>-<stage>-lane-`: the lane queue name less the endpoint's name. */
export function lanePrefix(service: string, stage: string): string {
  return `${service}-${stage}-lane-`;
}

/** LANE_QUEUE_URL_PREFIX: the URL of every lane queue of the stage, less the endpoint's name. */
export function laneQueueUrlPrefix(service: string, stage: string): { 'Fn::Sub': string } {
  return {
    'Fn::Sub': `https://sqs.\${AWS::Region}.\${AWS::URLSuffix}/\${AWS::AccountId}/${lanePrefix(service, stage)}`,
  };
}

/** The endpoint's retry schedule from the endpoints file (plain parsed YAML), or the default. */
export function retryScheduleOf(document: unknown, endpointName: string): readonly number[] {
  const endpoints =
    document && typeof document === 'object' ? (document as { endpoints?: unknown }).endpoints : undefined;
  const entry: unknown = Array.isArray(endpoints)
    ? endpoints.find((e) => e && (e as { name?: unknown }).name === endpointName)
    : undefined;
  const schedule = entry ? (entry as { retrySchedule?: unknown }).retrySchedule : undefined;
  return Array.isArray(schedule) && schedule.length ? schedule.map(Number) : DEFAULT_RETRY_SCHEDULE_S;
}

/** What laneProblems checks: the stage's names, endpoints file, parking and the lanes' retention. */
export interface LaneCheck {
  service: string;
  stage: string;
  endpoints: readonly { name: string }[];
  document: unknown;
  parkAfterS: number;
  laneRetentionS: number;
  deadLetteredAfterS: number;
}

/**
 * Why the stage's lanes would not work, one message per problem (none: they fit): a queue name SQS refuses, a retry
 * schedule that outlasts the lane's retention, or parking that comes after records are dead-lettered.
 */
export function laneProblems({
  service,
  stage,
  endpoints,
  document,
  parkAfterS,
  laneRetentionS,
  deadLetteredAfterS,
}: LaneCheck): string[] {
  const problems = [];
  if (parkAfterS >= deadLetteredAfterS) {
    problems.push(
      `param 'parkAfterS' is ${parkAfterS}, but a record failing at every receive can reach the dead-letter queue ` +
        `after ${deadLetteredAfterS} s (maxReceiveCount and the backoff): it would be dead-lettered before it is ` +
        `parked. Lower parkAfterS below ${deadLetteredAfterS} (default 300)`,
    );
  }
  for (const { name } of endpoints) {
    const queue = `${lanePrefix(service, stage)}${name}`;
    if (queue.length > LANE_QUEUE_NAME_LIMIT) {
      problems.push(
        `endpoint '${name}': its lane queue '${queue}' has ${queue.length} characters, over SQS's ` +
          `${LANE_QUEUE_NAME_LIMIT} per queue name: shorten the endpoint or stage name by ` +
          `${queue.length - LANE_QUEUE_NAME_LIMIT} characters`,
      );
    }
    const schedule = retryScheduleOf(document, name);
    const totalS = schedule.reduce((sum, s) => sum + s, 0);
    const neededS = totalS + parkAfterS + LANE_RETENTION_MARGIN_S;
    if (!schedule.every((s) => Number.isInteger(s) && s >= 0) || neededS > laneRetentionS) {
      problems.push(
        `endpoint '${name}': its retrySchedule (${totalS} s in all) + parkAfterS (${parkAfterS}) + one day ` +
          `(${LANE_RETENTION_MARGIN_S}) = ${neededS} s must be whole seconds within the lane's retention ` +
          `(param laneRetentionS, ${laneRetentionS} s): shorten the schedule or raise laneRetentionS (at most 1209600)`,
      );
    }
  }
  return problems;
}

/**
 * A lane's MaximumConcurrency. An endpoint with a global budget (maxRatePerSecond) gets what the source path's
 * worst case leaves of it, at least Lambda's 2; any other endpoint gets the source path's maximumConcurrency, each
 * instance held to the endpoint's own rateLimitPerSecond and connections as on the source path.
 */
export function laneConcurrency(maximumConcurrency: number, budgetInstances: number | undefined): number {
  if (budgetInstances === undefined) return maximumConcurrency;
  return Math.min(maximumConcurrency, Math.max(LANE_MIN_CONCURRENCY, budgetInstances - maximumConcurrency));
}

function laneQueue(stage: LaneStage, endpoint: LaneStage['endpoints'][number]): Resource {
  return {
    Type: 'AWS::SQS::Queue',
    Properties: {
      QueueName: `${lanePrefix(stage.service, stage.stage)}${endpoint.name}`,
      // As the source queue: at least 6 × the function timeout (+ window), AWS's rule for Lambda event sources.
      VisibilityTimeout: 6 * stage.timeoutS + stage.windowS,
      MessageRetentionPeriod: stage.laneRetentionS,
      SqsManagedSseEnabled: true,
      // A crash safety net only: the function re-sends a waiting message rather than failing it, so only a record
      // that crashes the function 10 times lands here.
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': ['IngestDeadLetterQueue', 'Arn'] }, maxReceiveCount: 10 },
    },
  };
}

function laneEventSource(endpoint: LaneStage['endpoints'][number], dependsOn: string[]): Resource {
  return {
    Type: 'AWS::Lambda::EventSourceMapping',
    // The role must allow receiving from the lane before Lambda validates the mapping.
    DependsOn: dependsOn,
    Properties: {
      EventSourceArn: { 'Fn::GetAtt': [`IngestLane${endpoint.id}`, 'Arn'] },
      FunctionName: { 'Fn::GetAtt': ['IngestLambdaFunction', 'Arn'] },
      BatchSize: LANE_BATCH_SIZE,
      Enabled: true,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: endpoint.laneConcurrency },
    },
  };
}

/** Exactly the lane queues: parking sends to them; the event source mappings and the re-delay consume them. */
function lanesPolicy(stage: LaneStage): Resource {
  const arns = stage.endpoints.map((e) => ({
    'Fn::Sub': `arn:\${AWS::Partition}:sqs:\${AWS::Region}:\${AWS::AccountId}:${lanePrefix(stage.service, stage.stage)}${e.name}`,
  }));
  return {
    Type: 'AWS::IAM::Policy',
    Properties: {
      PolicyName: 'lanes',
      Roles: [{ Ref: 'IngestRole' }],
      PolicyDocument: {
        Version: '2012-10-17',
        Statement: [
          // SendMessage: parking on the source path and the re-delay of a waiting lane message (SendMessageBatch
          // included). Receive/Delete/GetQueueAttributes: the event source mappings. ListQueueTags: the pause tag
          // (lib/lanes/pause.ts). No ChangeMessageVisibility: a lane batch's failed record is not backed off (it
          // comes back after the visibility timeout). One statement: the policy grows by one ARN per endpoint.
          {
            Sid: 'ParkInAndConsumeLanes',
            Effect: 'Allow',
            Action: [
              'sqs:SendMessage',
              'sqs:ReceiveMessage',
              'sqs:DeleteMessage',
              'sqs:GetQueueAttributes',
              'sqs:ListQueueTags',
            ],
            Resource: arns,
          },
        ],
      },
    },
  };
}

/** What the lanes' resources are built from. */
type LaneStage = Pick<Stage, 'lanes' | 'service' | 'stage' | 'timeoutS' | 'windowS' | 'laneRetentionS'> & {
  endpoints: readonly Pick<StageEndpoint, 'name' | 'id' | 'laneConcurrency'>[];
};

/** The lanes' queues, event source mappings and policy; `dependsOn`: what the mappings must wait for besides it. */
export function laneResources(stage: LaneStage, dependsOn: string[] = []): Resources {
  if (!stage.lanes) return {};
  const resources: Resources = { IngestLanesPolicy: lanesPolicy(stage) };
  for (const endpoint of stage.endpoints) {
    resources[`IngestLane${endpoint.id}`] = laneQueue(stage, endpoint);
    resources[`IngestLaneEventSource${endpoint.id}`] = laneEventSource(endpoint, ['IngestLanesPolicy', ...dependsOn]);
  }
  return resources;
}

/** The environment the function needs for its lanes (none without param lanes: no lanes, today's path). */
export function laneEnvironment(
  stage: Pick<Stage, 'lanes' | 'service' | 'stage' | 'parkAfterS'>,
): Record<string, Value> {
  if (!stage.lanes) return {};
  return {
    LANE_QUEUE_URL_PREFIX: laneQueueUrlPrefix(stage.service, stage.stage),
    PARK_AFTER_S: String(stage.parkAfterS),
  };
}

/** Alarm when a queue nears SQS's in-flight ceiling: past it, receives answer empty and the queue stops moving. */
export function inFlightAlarm(alarmName: string, queueName: Value, what: string, actions: Notifications): Resource {
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmName: alarmName,
      AlarmDescription:
        `${what} holds ${IN_FLIGHT_ALARM_COUNT} or more messages in flight, near SQS's ceiling of about 120,000 ` +
        '(received and not yet deleted, or in backoff): at the ceiling SQS answers receives with no message and ' +
        'the queue stops moving. See docs/operations.md, Alarms and what to do.',
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesNotVisible',
      Dimensions: [{ Name: 'QueueName', Value: queueName }],
      Statistic: 'Maximum',
      Period: 60,
      EvaluationPeriods: 1,
      DatapointsToAlarm: 1,
      Threshold: IN_FLIGHT_ALARM_COUNT,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
      ...actions,
    },
  };
}

/**
 * The backlog-age alarm's period: a waiting lane message hops (is sent again) at least every LANE_HOP_S, and each
 * hop's invocation writes LaneBacklogAgeS, so every period this long has a data point while the lane holds anything.
 */
export function backlogAgePeriodS(timeoutS: number): number {
  return Math.ceil((LANE_HOP_S + timeoutS) / 60) * 60 + 60;
}

/** Alarm when an endpoint's oldest parked event has waited longer than laneBacklogAgeAlarmS, however quiet it is. */
export function backlogAgeAlarm(
  stage: Stage,
  endpoint: StageEndpoint,
  metricName: string,
  actions: Notifications,
): Resource {
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmName: `${stage.service}-${stage.stage}-endpoint-${endpoint.name}-backlog-age`,
      AlarmDescription:
        `Endpoint '${endpoint.name}' has events parked in its lane for more than ${stage.laneBacklogAgeAlarmS} s ` +
        'since they first failed: it is down, refusing, or paused. The other endpoints are not held up. Its lane ' +
        "retries by its retrySchedule, then dead-letters with reason retries-exhausted. Check the dashboard's " +
        'lane backlog and the "Delivery failures by endpoint and status" query.',
      Namespace: stage.namespace,
      MetricName: metricName,
      Dimensions: [
        { Name: 'service', Value: stage.serviceDimension },
        { Name: 'endpoint', Value: endpoint.name },
      ],
      Statistic: 'Maximum',
      Period: backlogAgePeriodS(stage.timeoutS),
      EvaluationPeriods: 1,
      DatapointsToAlarm: 1,
      Threshold: stage.laneBacklogAgeAlarmS,
      ComparisonOperator: 'GreaterThanThreshold',
      // An empty lane writes nothing: quiet.
      TreatMissingData: 'notBreaching',
      ...actions,
    },
  };
}

/** The in-flight alarm of every queue of the stage (lanes included) and the backlog-age alarm of every lane. */
export function queueAlarms(stage: Stage, metricName: string, actions: Notifications): Resources {
  const name = (suffix: string) => `${stage.service}-${stage.stage}-${suffix}`;
  const alarms: Resources = {
    SourceQueueInFlightAlarm: inFlightAlarm(
      name('ingest-in-flight'),
      { 'Fn::GetAtt': ['IngestQueue', 'QueueName'] },
      'The source queue',
      actions,
    ),
    DeadLetterQueueInFlightAlarm: inFlightAlarm(
      name('dlq-in-flight'),
      { 'Fn::GetAtt': ['IngestDeadLetterQueue', 'QueueName'] },
      'The dead-letter queue',
      actions,
    ),
  };
  if (!stage.lanes) return alarms;
  for (const endpoint of stage.endpoints) {
    alarms[`LaneInFlightAlarm${endpoint.id}`] = inFlightAlarm(
      name(`lane-${endpoint.name}-in-flight`),
      { 'Fn::GetAtt': [`IngestLane${endpoint.id}`, 'QueueName'] },
      `The lane of endpoint '${endpoint.name}'`,
      actions,
    );
    alarms[`LaneBacklogAgeAlarm${endpoint.id}`] = backlogAgeAlarm(stage, endpoint, metricName, actions);
  }
  return alarms;
}
