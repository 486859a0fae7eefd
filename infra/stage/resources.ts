// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// The generated resources and the extensions of serverless.yml's own, merged into the stack.

import { batchAlarms, endpointAlarm, endpointDownAlarm, recordsFailingAlarm } from './alarms';
import type { Resources } from './cfn';
import { dashboardBody, LANE_BACKLOG_AGE_METRIC } from './dashboard';
import { credentialsPolicy, namedByGrants } from './iam';
import { laneEnvironment, laneResources, queueAlarms } from './lanes';
import type { FrameworkContext, Stage } from './load';
import { alarmTopic, notifications, STATIC_ALARM_IDS } from './notifications';
import { errorAlarmPeriods, stageOf } from './variables';

/** What the stack adds to a resource serverless.yml or infra/*.yml already declares. */
interface Extension {
  Properties?: Record<string, unknown>;
  DependsOn?: string[];
}
type Extensions = Record<string, Extension>;

const ESM_LOGICAL_ID = 'IngestEventSourceMappingSQSIngestQueue';

const FUNCTION_LOGICAL_ID = 'IngestLambdaFunction';

/** FIFO stages: both queues become FIFO (names end in .fifo); standard stages keep infra/queues.yml as written. */
function fifoQueues(stage: Stage): Extensions {
  if (!stage.fifo) return {};
  const name = (suffix: string) => `${stage.service}-${stage.stage}-${suffix}.fifo`;
  return {
    IngestQueue: {
      Properties: {
        QueueName: name('ingest'),
        FifoQueue: true,
        // Producers may omit MessageDeduplicationId; setting it to the event's idempotency key is better still.
        ContentBasedDeduplication: true,
        // High-throughput FIFO: ordering and deduplication per message group, not per queue.
        DeduplicationScope: 'messageGroup',
        FifoThroughputLimit: 'perMessageGroupId',
      },
    },
    IngestDeadLetterQueue: {
      Properties: { QueueName: name('dlq'), FifoQueue: true, ContentBasedDeduplication: true },
    },
  };
}

/**
 * What serverless.yml and infra/*.yml leave to the stage: FIFO properties, the batching window (standard queues only)
 * and where alarms notify, as extensions of their resources.
 */
function stageExtensions(stage: Stage): Extensions {
  const extensions = fifoQueues(stage);
  // FIFO event sources take no batching window: the property is left out, not set under a condition.
  if (!stage.fifo) extensions[ESM_LOGICAL_ID] = { Properties: { MaximumBatchingWindowInSeconds: stage.windowS } };
  const actions = notifications(stage);
  if (actions.AlarmActions) for (const id of STATIC_ALARM_IDS) extensions[id] = { Properties: actions };
  return extensions;
}

/** Environment values as the framework writes them: numbers and booleans as strings, references as they are. */
function asCompiled(environment: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(environment).map(([key, value]) => [
      key,
      typeof value === 'number' || typeof value === 'boolean' ? String(value) : value,
    ]),
  );
}

/** The generated resources, merged into the stack by serverless.yml's `resources` list. */
export async function resources(context: FrameworkContext) {
  const stage = await stageOf(context);
  const generated: Resources = batchAlarms(stage, await errorAlarmPeriods(context));
  if (!stage.lanes) generated.RecordsFailingAlarm = recordsFailingAlarm(stage);
  for (const endpoint of stage.endpoints) {
    generated[`EndpointFailureRateAlarm${endpoint.id}`] = endpointAlarm(stage, endpoint);
    generated[`EndpointDownAlarm${endpoint.id}`] = endpointDownAlarm(stage, endpoint);
  }
  Object.assign(generated, queueAlarms(stage, LANE_BACKLOG_AGE_METRIC(stage), notifications(stage)));
  generated.IngestDashboard = {
    Type: 'AWS::CloudWatch::Dashboard',
    Properties: {
      // Dashboard names are global in an account: the same stage in a second region needs its own.
      DashboardName: { 'Fn::Sub': `${stage.service}-${stage.stage}-\${AWS::Region}` },
      DashboardBody: { 'Fn::Sub': dashboardBody(stage, Object.keys(generated)) },
    },
  };
  const topic = alarmTopic(stage);
  Object.assign(generated, topic.Resources);
  const extensions = stageExtensions(stage);
  const functionDependsOn: string[] = [];
  if (stage.credentials.length) {
    const [id, policy] = namedByGrants(credentialsPolicy(stage));
    generated[id] = policy;
    // The function (its new ENDPOINT_CREDENTIALS) updates only once it may read them; records flow after that.
    functionDependsOn.push(id);
    extensions[ESM_LOGICAL_ID] = { ...extensions[ESM_LOGICAL_ID], DependsOn: [id] };
  }
  const lanes = laneResources(stage, functionDependsOn);
  Object.assign(generated, lanes);
  if (lanes.IngestLanesPolicy) {
    // The function parks in its lanes only once it may send to them. Extensions replace Properties keys whole: the
    // environment is serverless.yml's, with the lanes' variables added.
    functionDependsOn.push('IngestLanesPolicy');
    extensions[FUNCTION_LOGICAL_ID] = {
      Properties: { Environment: { Variables: { ...asCompiled(stage.environment), ...laneEnvironment(stage) } } },
    };
  }
  if (functionDependsOn.length) {
    extensions[FUNCTION_LOGICAL_ID] = { ...extensions[FUNCTION_LOGICAL_ID], DependsOn: functionDependsOn };
  }
  return { Resources: generated, Outputs: topic.Outputs, extensions };
}
