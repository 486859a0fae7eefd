// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// The stage being packaged: its params, environment and endpoints checked and gathered once.

import { checkEndpoints, importTs } from './endpoints.js';
import { fail } from './errors.js';
import { laneConcurrency, laneEnvironment, laneProblems } from './lanes.js';
import { checkDlqRetention, checkEnvironmentSize, checkFunctionName, checkRetention } from './limits.js';
import { failingRecordLifeS, outageAlarmEvaluation } from './outage.js';
import { checkPlainParams, endpointsFilePath, flag, integer, kmsKeyArn, LIMITS, pascal, percent } from './params.js';
import { budgetInstances, checkRates } from './rates.js';

export async function load({ resolveVariable, resolveConfigurationProperty }) {
  const param = (name) => resolveVariable(`param:${name}`);
  const [service, stage, region] = await Promise.all([
    resolveVariable('self:service'),
    resolveVariable('sls:stage'),
    resolveVariable('self:provider.region'),
  ]);
  checkFunctionName(stage, service);
  const fifo = flag(stage, 'fifo', await param('fifo'));
  // A preview (serverless.yml): no redrive back to a lane and no pause yet, so off unless the stage asks.
  const lanes = flag(stage, 'lanes', await param('lanes'));
  if (lanes && fifo) {
    fail(
      stage,
      "param 'lanes' is true on a FIFO stage (param 'fifo' true): FIFO stages have no lanes (per-group order). " +
        'Set lanes to false, or fifo to false',
    );
  }
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

  // The function's environment, as deployed; values that are CloudFormation references are checked by AWS.
  const environment = (await resolveConfigurationProperty(['provider', 'environment'])) ?? {};
  const env = Object.fromEntries(
    Object.entries(environment).filter(([, value]) => typeof value === 'string' || typeof value === 'number'),
  );
  for (const [key, value] of Object.entries(env)) env[key] = String(value);
  const parkAfterS = integer(stage, 'parkAfterS', await param('parkAfterS'), [0, LIMITS.retentionS[1]]);
  const laneRetentionS = integer(stage, 'laneRetentionS', await param('laneRetentionS'), LIMITS.retentionS);
  const laneBacklogAgeAlarmS = integer(stage, 'laneBacklogAgeAlarmS', await param('laneBacklogAgeAlarmS'), [
    parkAfterS + 1,
    LIMITS.retentionS[1],
  ]);
  checkEnvironmentSize(stage, { ...environment, ...laneEnvironment({ lanes, service, stage, parkAfterS }) });
  const file = await endpointsFilePath(stage, param);
  if (!env.ENDPOINTS?.trim() && !file) {
    fail(
      stage,
      `has no endpoints: write endpoints/${stage}.yml (see endpoints/example.yml), or list name=url pairs in ` +
        `serverless.yml (params.${stage}.endpoints) or pass --param="endpoints=<name>=<url>,..."`,
    );
  }
  const [{ MetricName, METRICS_NAMESPACE }, { config, credentials, endpointsFile }] = await Promise.all([
    importTs('../../lib/observability/observability.ts'),
    checkEndpoints(stage, env, file),
  ]);
  if (config.deadlineMarginMs >= timeoutS * 1000) {
    fail(
      stage,
      `DEADLINE_MARGIN_MS (${config.deadlineMarginMs}) leaves no time to deliver within timeoutS ${timeoutS}`,
    );
  }
  // The framework's own output goes to stderr too; this is what an operator reads before deploying.
  console.error(checkRates(stage, config, { maximumConcurrency, batchSize, timeoutS }).join('\n'));
  const maxReceiveCount = integer(stage, 'maxReceiveCount', await param('maxReceiveCount'), LIMITS.maxReceiveCount);
  checkRetention(stage, {
    timeoutS,
    windowS,
    maxReceiveCount,
    retentionS: queueRetentionS,
    retryMaxDelayS: config.retryMaxDelayS,
  });
  const outageAlarm = outageAlarmEvaluation(stage, {
    maxReceiveCount,
    baseDelayS: config.retryBaseDelayS,
    maxDelayS: config.retryMaxDelayS,
    windowS,
    timeoutS,
  });
  if (lanes) {
    const [problem] = laneProblems({
      service,
      stage,
      endpoints: config.endpoints,
      document: endpointsFile?.document,
      parkAfterS,
      laneRetentionS,
      deadLetteredAfterS: failingRecordLifeS({
        maxReceiveCount,
        baseDelayS: config.retryBaseDelayS,
        maxDelayS: config.retryMaxDelayS,
        windowS,
        timeoutS,
      }).shortest,
    });
    if (problem) fail(stage, problem);
  }
  const logicalIds = new Map();
  for (const { name } of config.endpoints) {
    const id = pascal(name);
    const clash = logicalIds.get(id.toLowerCase());
    if (clash) fail(stage, `endpoint names '${clash}' and '${name}' give the same alarm name: rename one`);
    logicalIds.set(id.toLowerCase(), name);
  }
  return {
    service,
    stage,
    fifo,
    lanes,
    queueRetentionS,
    dlqRetentionS,
    // The endpoints file as JSON text: esbuild's define puts it into the bundle (lib/subscription/source.ts).
    endpointsBundle: endpointsFile ? JSON.stringify(endpointsFile.document) : '',
    timeoutS,
    windowS,
    batchSize,
    retryMaxDelayS: config.retryMaxDelayS,
    outageAlarm,
    environment,
    parkAfterS,
    laneRetentionS,
    laneBacklogAgeAlarmS,
    endpoints: config.endpoints.map((e) => ({
      name: e.name,
      id: pascal(e.name),
      laneConcurrency: laneConcurrency(maximumConcurrency, budgetInstances(e)),
    })),
    credentials,
    serviceDimension: env.POWERTOOLS_SERVICE_NAME || service,
    namespace: env.POWERTOOLS_METRICS_NAMESPACE || METRICS_NAMESPACE,
    metric: MetricName,
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
