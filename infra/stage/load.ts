// The stage being packaged: its params, environment and endpoints checked and gathered once.

import { METRICS_NAMESPACE, MetricName } from '../../lib/observability/observability';
import { checkEndpoints } from './endpoints';
import { fail } from './errors';
import { laneConcurrency, laneEnvironment, laneProblems, lanesParam } from './lanes';
import { checkDlqRetention, checkEnvironmentSize, checkFunctionName, checkRetention } from './limits';
import { failingRecordLifeS, type OutageParams, outageAlarmEvaluation } from './outage';
import {
  checkPlainParams,
  endpointsFilePath,
  flag,
  integer,
  kmsKeyArn,
  LIMITS,
  type Param,
  pascal,
  percent,
} from './params';
import { budgetInstances, checkRates } from './rates';

/** What every `${file(./infra/stage.js):<export>}` receives from the framework (osls, serverless v3 and v4). */
export interface FrameworkContext {
  resolveVariable(name: string): Promise<unknown>;
  resolveConfigurationProperty(path: string[]): Promise<unknown>;
}

/** The stage's identity as the framework resolves it. */
async function identity({ resolveVariable }: FrameworkContext) {
  const [service, stage, region] = await Promise.all([
    resolveVariable('self:service'),
    resolveVariable('sls:stage'),
    resolveVariable('self:provider.region'),
  ]);
  return { service: String(service), stage: String(stage), region: String(region) };
}

/** The queues' and the event source's params, checked against Lambda's and SQS's limits. */
async function queueParams(stage: string, param: Param) {
  const fifo = flag(stage, 'fifo', await param('fifo'));
  const lanesChoice = lanesParam(await param('lanes'), fifo);
  if ('problem' in lanesChoice) fail(stage, lanesChoice.problem);
  const { lanes } = lanesChoice;
  const timeoutS = integer(stage, 'timeoutS', await param('timeoutS'), LIMITS.timeoutS);
  const batchSize = integer(
    stage,
    'batchSize',
    await param('batchSize'),
    fifo ? LIMITS.batchSizeFifo : LIMITS.batchSizeStandard,
  );
  const windowS = fifo ? 0 : integer(stage, 'batchingWindowS', await param('batchingWindowS'), LIMITS.windowS);
  if (batchSize > 10 && windowS < 1) {
    fail(stage, `param 'batchSize' is ${batchSize}: above 10, Lambda needs a batchingWindowS of at least 1`);
  }
  const maximumConcurrency = integer(stage, 'maximumConcurrency', await param('maximumConcurrency'), [2, 1000]);
  const queueRetentionS = integer(stage, 'queueRetentionS', await param('queueRetentionS'), LIMITS.retentionS);
  const dlqRetentionS = integer(stage, 'dlqRetentionS', await param('dlqRetentionS'), LIMITS.retentionS);
  checkDlqRetention(stage, queueRetentionS, dlqRetentionS);
  return { fifo, lanes, timeoutS, batchSize, windowS, maximumConcurrency, queueRetentionS, dlqRetentionS };
}

/** The function's environment as deployed; `env`: its literal values as strings, what lib/config parses. */
async function functionEnvironment({ resolveConfigurationProperty }: FrameworkContext) {
  const resolved = await resolveConfigurationProperty(['provider', 'environment']);
  // Values that are CloudFormation references are checked by AWS.
  const environment = (typeof resolved === 'object' && resolved !== null ? resolved : {}) as Record<string, unknown>;
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(environment)) {
    if (typeof value === 'string' || typeof value === 'number') env[key] = String(value);
  }
  return { environment, env };
}

/** The lanes' params (read on every stage: a typo fails even while lanes are off). */
async function laneParams(stage: string, param: Param) {
  const parkAfterS = integer(stage, 'parkAfterS', await param('parkAfterS'), [0, LIMITS.retentionS[1]]);
  const laneRetentionS = integer(stage, 'laneRetentionS', await param('laneRetentionS'), LIMITS.retentionS);
  const laneBacklogAgeAlarmS = integer(stage, 'laneBacklogAgeAlarmS', await param('laneBacklogAgeAlarmS'), [
    parkAfterS + 1,
    LIMITS.retentionS[1],
  ]);
  return { parkAfterS, laneRetentionS, laneBacklogAgeAlarmS };
}

/** Refuses endpoint names whose logical ids (alarms, lanes) would be the same. */
function checkLogicalIds(stage: string, endpoints: readonly { name: string }[]): void {
  const logicalIds = new Map<string, string>();
  for (const { name } of endpoints) {
    const id = pascal(name);
    const clash = logicalIds.get(id.toLowerCase());
    if (clash) fail(stage, `endpoint names '${clash}' and '${name}' give the same alarm name: rename one`);
    logicalIds.set(id.toLowerCase(), name);
  }
}

/** The alarms' params and where they notify. */
async function alarmParams(stage: string, region: string, param: Param) {
  return {
    kmsKeyArn: kmsKeyArn(stage, region, await param('credentialsKmsKeyArn')),
    ...checkPlainParams(stage, region, {
      queueAgeAlarmS: await param('queueAgeAlarmS'),
      alarmTopicArn: await param('alarmTopicArn'),
      alarmEmail: await param('alarmEmail'),
      memorySize: await param('memorySize'),
      logRetentionDays: await param('logRetentionDays'),
    }),
    failureRatePct: percent(stage, 'endpointFailureRatePct', await param('endpointFailureRatePct')),
    recordsFailingPct: percent(stage, 'recordsFailingPct', await param('recordsFailingPct')),
    failureMinDeliveries: integer(
      stage,
      'endpointFailureMinDeliveries',
      await param('endpointFailureMinDeliveries'),
      [1, 1_000_000],
    ),
  };
}

/** The endpoints and credentials of a stage that has some, checked as deployed and against the timeout. */
async function endpointsOf(stage: string, param: Param, env: Record<string, string>, timeoutS: number) {
  const file = await endpointsFilePath(stage, param);
  if (!env.ENDPOINTS?.trim() && !file) {
    fail(
      stage,
      `has no endpoints: write endpoints/${stage}.yml (see endpoints/example.yml), or list name=url pairs in ` +
        `serverless.yml (params.${stage}.endpoints) or pass --param="endpoints=<name>=<url>,..."`,
    );
  }
  const checked = checkEndpoints(stage, env, file);
  if (checked.config.deadlineMarginMs >= timeoutS * 1000) {
    fail(
      stage,
      `DEADLINE_MARGIN_MS (${checked.config.deadlineMarginMs}) leaves no time to deliver within timeoutS ${timeoutS}`,
    );
  }
  return checked;
}

/** Lane problems the stage would deploy with: the first one refuses it. */
function checkLanes(stage: string, lanes: Parameters<typeof laneProblems>[0]): void {
  const [problem] = laneProblems(lanes);
  if (problem) fail(stage, problem);
}

export async function load(context: FrameworkContext) {
  const param: Param = (name) => context.resolveVariable(`param:${name}`);
  const { service, stage, region } = await identity(context);
  checkFunctionName(stage, service);
  const queue = await queueParams(stage, param);
  const { timeoutS, windowS, batchSize, maximumConcurrency } = queue;
  const { environment, env } = await functionEnvironment(context);
  const lane = await laneParams(stage, param);
  checkEnvironmentSize(stage, { ...environment, ...laneEnvironment({ lanes: queue.lanes, service, stage, ...lane }) });
  const { config, credentials, endpointsFile } = await endpointsOf(stage, param, env, timeoutS);
  // The framework's own output goes to stderr too; this is what an operator reads before deploying.
  console.error(checkRates(stage, config, { maximumConcurrency, batchSize, timeoutS }).join('\n'));
  const maxReceiveCount = integer(stage, 'maxReceiveCount', await param('maxReceiveCount'), LIMITS.maxReceiveCount);
  const retryMaxDelayS = config.retryMaxDelayS;
  checkRetention(stage, { timeoutS, windowS, maxReceiveCount, retentionS: queue.queueRetentionS, retryMaxDelayS });
  const failing: OutageParams = {
    maxReceiveCount,
    baseDelayS: config.retryBaseDelayS,
    maxDelayS: retryMaxDelayS,
    windowS,
    timeoutS,
  };
  const outageAlarm = outageAlarmEvaluation(stage, failing);
  if (queue.lanes) {
    const deadLetteredAfterS = failingRecordLifeS(failing).shortest;
    const { endpoints } = config;
    checkLanes(stage, { service, stage, endpoints, document: endpointsFile?.document, ...lane, deadLetteredAfterS });
  }
  checkLogicalIds(stage, config.endpoints);
  return {
    service,
    stage,
    ...queue,
    // The endpoints file as JSON text: esbuild's define puts it into the bundle (lib/subscription/source.ts).
    endpointsBundle: endpointsFile ? JSON.stringify(endpointsFile.document) : '',
    retryMaxDelayS,
    outageAlarm,
    environment,
    ...lane,
    endpoints: config.endpoints.map((e) => ({
      name: e.name,
      id: pascal(e.name),
      laneConcurrency: laneConcurrency(maximumConcurrency, budgetInstances(e)),
    })),
    credentials,
    serviceDimension: env.POWERTOOLS_SERVICE_NAME || service,
    namespace: env.POWERTOOLS_METRICS_NAMESPACE || METRICS_NAMESPACE,
    metric: MetricName,
    ...(await alarmParams(stage, region, param)),
  };
}

/** The stage being packaged, as every generated piece reads it. */
export type Stage = Awaited<ReturnType<typeof load>>;
