// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// What serverless variables cannot do, for the stage being packaged: check the stage params and the endpoints file
// (endpoints/<stage>.yml) with the function's own parsers (a bad ENDPOINTS, ENDPOINT_CREDENTIALS or endpoints file
// fails `npm run package`, not the first invocation in production), bundle the file, check the endpoints' rate budgets,
// derive the queue's visibility timeout, and generate what depends on the endpoint list: one failure-rate alarm per
// endpoint, the dashboard and the IAM policy for the endpoint credentials.
// serverless.yml uses it as ${file(./infra/stage.js):<export>}; every export receives { resolveVariable,
// resolveConfigurationProperty } from the framework (osls, serverless v3 and v4 alike).

import { createHash } from 'node:crypto';
import { laneConcurrency, laneEnvironment, laneProblems, laneResources, lanesParam, queueAlarms } from './lanes.js';

/** Lambda's limits for SQS event sources; FIFO queues take no batching window and at most 10 records. */
const LIMITS = {
  retentionS: [60, 1_209_600],
  timeoutS: [1, 900],
  batchSizeStandard: [1, 10_000],
  batchSizeFifo: [1, 10],
  windowS: [0, 300],
  maxReceiveCount: [1, 1000],
};
const ESM_LOGICAL_ID = 'IngestEventSourceMappingSQSIngestQueue';
const FUNCTION_LOGICAL_ID = 'IngestLambdaFunction';

let pending;

async function importTs(path) {
  // tsx (a dev dependency, like the framework itself) loads the TypeScript sources of lib/ as they are.
  const { tsImport } = await import('tsx/esm/api');
  return tsImport(path, import.meta.url);
}

/** A stage param the function would reject; the message names the param and the fix. */
class StageConfigError extends Error {
  name = 'StageConfigError';
}

function fail(stage, message) {
  throw new StageConfigError(`Stage '${stage}': ${message}`);
}

/** Every variable that reads this file would repeat the error inside "Cannot resolve serverless.yml": say it once. */
function stop(error) {
  process.stderr.write(
    `\nError:\n${error.message}\n(checked by infra/stage.js while packaging; nothing was deployed)\n`,
  );
  process.exit(1);
}

/** A true/false param (YAML boolean, or the string of one from --param=name=value). */
function flag(stage, name, value) {
  if (![true, false, 'true', 'false'].includes(value)) {
    fail(stage, `param '${name}' is ${JSON.stringify(value)}: use true or false`);
  }
  return value === true || value === 'true';
}

function integer(stage, name, value, [min, max]) {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (!Number.isInteger(number) || number < min || number > max) {
    fail(stage, `param '${name}' is ${JSON.stringify(value)}: use a whole number from ${min} to ${max}`);
  }
  return number;
}

function percent(stage, name, value) {
  const number = Number(value);
  if (value === '' || !(number > 0 && number < 100)) {
    fail(stage, `param '${name}' is ${JSON.stringify(value)}: use a percentage above 0 and below 100`);
  }
  return number;
}

/** A key ARN in the stage's region; IAM authorises kms:Decrypt on the key ARN, never on an alias or a bare id. */
export function kmsKeyArn(stage, region, value) {
  const arn = String(value ?? '').trim();
  if (!arn) return '';
  const match = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):\d{12}:key\/[A-Za-z0-9-]+$/.exec(arn);
  if (!match) {
    fail(
      stage,
      `param 'credentialsKmsKeyArn' is '${arn}': use the key's ARN, arn:aws:kms:${region}:<account>:key/<key id> ` +
        '(aws kms describe-key --key-id <alias> prints it); IAM never matches kms:Decrypt on an alias',
    );
  }
  if (match[1] !== region) {
    fail(
      stage,
      `param 'credentialsKmsKeyArn' is a key in ${match[1]}, but the stage deploys to ${region}: ` +
        `parameters and secrets are encrypted with a key of their own region; use that key's ARN`,
    );
  }
  return arn;
}

/** CloudWatch Logs' accepted retentions (days). */
const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

/** The params serverless.yml and infra/alarms.yml use verbatim: checked here, so a typo fails the package. */
export function checkPlainParams(
  stage,
  region,
  { queueAgeAlarmS, alarmTopicArn, alarmEmail, memorySize, logRetentionDays },
) {
  const topic = String(alarmTopicArn ?? '').trim();
  const topicMatch = /^arn:aws[a-z-]*:sns:([a-z0-9-]+):\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/.exec(topic);
  if (topic && !topicMatch) {
    fail(stage, `param 'alarmTopicArn' is '${topic}': use an SNS topic ARN, arn:aws:sns:${region}:<account>:<topic>`);
  }
  if (topicMatch && topicMatch[1] !== region) {
    fail(
      stage,
      `param 'alarmTopicArn' is a topic in ${topicMatch[1]}, but the alarms are in ${region}: use a topic of ${region}`,
    );
  }
  const email = String(alarmEmail ?? '').trim();
  if (email && !/^[^\s@,;]+@[^\s@,;]+\.[^\s@,;]+$/.test(email)) {
    fail(stage, `param 'alarmEmail' is '${email}': use one e-mail address (or alarmTopicArn for several)`);
  }
  const days = integer(stage, 'logRetentionDays', logRetentionDays, [1, 3653]);
  if (!LOG_RETENTION_DAYS.includes(days)) {
    fail(stage, `param 'logRetentionDays' is ${days}: CloudWatch Logs accepts ${LOG_RETENTION_DAYS.join(', ')}`);
  }
  return {
    queueAgeAlarmS: integer(stage, 'queueAgeAlarmS', queueAgeAlarmS, [60, 1_209_600]),
    alarmTopicArn: topic,
    alarmEmail: email,
    memorySize: integer(stage, 'memorySize', memorySize, [128, 10_240]),
    logRetentionDays: days,
  };
}

/** Lambda's limit on all environment variables together (keys and values), checked before any deploy. */
export const ENVIRONMENT_LIMIT_BYTES = 4096;
// A CloudFormation reference resolves at deploy time: count the longest a queue URL or table name can be.
const REFERENCE_BYTES = 256;

function checkEnvironmentSize(stage, environment) {
  const sizes = Object.entries(environment).map(([key, value]) => [
    key,
    Buffer.byteLength(key) +
      (typeof value === 'string' || typeof value === 'number' ? Buffer.byteLength(String(value)) : REFERENCE_BYTES),
  ]);
  const total = sizes.reduce((sum, [, size]) => sum + size, 0);
  if (total > ENVIRONMENT_LIMIT_BYTES) {
    const largest = sizes
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([key, size]) => `${key} (${size} bytes)`)
      .join(', ');
    fail(
      stage,
      `the function's environment variables take ${total} bytes, over Lambda's ${ENVIRONMENT_LIMIT_BYTES}-byte limit ` +
        `(largest: ${largest}): shorten the endpoint URLs or credential names`,
    );
  }
}

/** Lambda's limit on a function name; the framework names the function <service>-<stage>-<function key>. */
export const FUNCTION_NAME_LIMIT = 64;

/** Refuses a stage whose function name Lambda would reject at deploy time. */
export function checkFunctionName(stage, service, functionKey = 'ingest') {
  const name = `${service}-${stage}-${functionKey}`;
  if (name.length <= FUNCTION_NAME_LIMIT) return name;
  fail(
    stage,
    `the function's name '${name}' has ${name.length} characters, over Lambda's ${FUNCTION_NAME_LIMIT}: use a stage ` +
      `name of at most ${FUNCTION_NAME_LIMIT - service.length - functionKey.length - 2} characters`,
  );
}

/** CloudWatch's limit on the metrics of one dashboard graph. */
export const METRICS_PER_GRAPH = 500;

/** Refuses a dashboard graph CloudWatch would reject; each endpoint adds the same number of metrics to it. */
export function checkGraphMetrics(stage, title, metricCount, endpointCount) {
  if (metricCount <= METRICS_PER_GRAPH) return;
  const perEndpoint = Math.ceil(metricCount / Math.max(1, endpointCount));
  fail(
    stage,
    `the dashboard graph '${title}' would show ${metricCount} metrics (${perEndpoint} per endpoint × ` +
      `${endpointCount} endpoints), over CloudWatch's ${METRICS_PER_GRAPH} per graph: a stage takes at most ` +
      `${Math.floor(METRICS_PER_GRAPH / perEndpoint)} endpoints; split them over two stages`,
  );
}

function pascal(name) {
  return name
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}

/**
 * A record must reach the DLQ well before SQS's retention deletes it: each receive can cost the function timeout
 * (plus the batching window) and then RETRY_MAX_DELAY_S of backoff, or the queue's own visibility timeout when the
 * backoff call fails. All receives together must take at most half the retention, which leaves the other half for
 * a backlog waiting before its first receive.
 */
/** How long a dead-lettered message must stay in the DLQ at least, for on-call to see, fix and redrive it. */
export const DLQ_OPERATOR_WINDOW_S = 7 * 86_400;

/**
 * SQS counts a DLQ message's retention from its ORIGINAL enqueue time: one that reached the DLQ late in the source
 * queue's retention must still have the operator window left there.
 */
export function checkDlqRetention(stage, queueRetentionS, dlqRetentionS) {
  const needed = queueRetentionS + DLQ_OPERATOR_WINDOW_S;
  if (dlqRetentionS >= needed) return;
  fail(
    stage,
    `param 'dlqRetentionS' (${dlqRetentionS}) must be at least queueRetentionS (${queueRetentionS}) + ` +
      `${DLQ_OPERATOR_WINDOW_S} s (7 days for on-call to redrive; SQS counts DLQ retention from the first enqueue) ` +
      `= ${needed}: ` +
      (needed <= LIMITS.retentionS[1]
        ? `raise dlqRetentionS to ${needed}`
        : `lower queueRetentionS to at most ${LIMITS.retentionS[1] - DLQ_OPERATOR_WINDOW_S} and set dlqRetentionS to ${LIMITS.retentionS[1]}`),
  );
}

function checkRetention(stage, { timeoutS, windowS, maxReceiveCount, retentionS, retryMaxDelayS }) {
  const perReceiveS = Math.max(timeoutS + windowS + retryMaxDelayS, 6 * timeoutS + windowS);
  const worstS = maxReceiveCount * perReceiveS;
  if (worstS * 2 <= retentionS) return;
  fail(
    stage,
    `a failing record can take maxReceiveCount ${maxReceiveCount} × ${perReceiveS} s (RETRY_MAX_DELAY_S ` +
      `${retryMaxDelayS} + timeoutS ${timeoutS} + batchingWindowS ${windowS}) = ${worstS} s to reach the dead-letter ` +
      `queue, more than half the source queue's retention (queueRetentionS ${retentionS} s): SQS could delete it ` +
      'before it is dead-lettered. ' +
      (worstS * 2 <= LIMITS.retentionS[1] - DLQ_OPERATOR_WINDOW_S
        ? 'Lower RETRY_MAX_DELAY_S (param retryMaxDelayS) or maxReceiveCount, or raise queueRetentionS to at least ' +
          `${worstS * 2} (and dlqRetentionS to queueRetentionS + ${DLQ_OPERATOR_WINDOW_S})`
        : 'Lower RETRY_MAX_DELAY_S (param retryMaxDelayS) or maxReceiveCount: queueRetentionS can be at most ' +
          `${LIMITS.retentionS[1] - DLQ_OPERATOR_WINDOW_S}, leaving the DLQ its ${DLQ_OPERATOR_WINDOW_S} s for on-call`),
  );
}

/**
 * The stage's endpoints (ENDPOINTS or the endpoints file) and credentials, checked with the function's own parsers as
 * deployed: plain http to a loopback host is refused (in Lambda, 127.0.0.1 is the Runtime API).
 */
export async function checkEndpoints(stage, env, file) {
  const [{ loadConfig }, { parseCredentialSpec }, { readEndpointsFile }, source] = await Promise.all([
    importTs('../lib/config/config.ts'),
    importTs('../lib/credentials/credentials.ts'),
    importTs('./endpoints-file.ts'),
    importTs('../lib/subscription/source.ts'),
  ]);
  try {
    const endpointsFile = file ? readEndpointsFile(file) : undefined;
    const config = loadConfig(env, endpointsFile ? { document: endpointsFile.document, source: file } : undefined, {
      deployed: true,
    });
    const spec = parseCredentialSpec(
      env.ENDPOINT_CREDENTIALS,
      config.endpoints.map((e) => e.name),
    );
    source.checkCredentialOverlap(spec, config.endpoints);
    return { config, credentials: [...spec, ...source.secretRefs(config.endpoints)], endpointsFile };
  } catch (error) {
    fail(stage, error instanceof Error ? error.message : String(error));
  }
}

async function load({ resolveVariable, resolveConfigurationProperty }) {
  const param = (name) => resolveVariable(`param:${name}`);
  const [service, stage, region] = await Promise.all([
    resolveVariable('self:service'),
    resolveVariable('sls:stage'),
    resolveVariable('self:provider.region'),
  ]);
  checkFunctionName(stage, service);
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
    importTs('../lib/observability/observability.ts'),
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
    failureMinDeliveries: integer(
      stage,
      'endpointFailureMinDeliveries',
      await param('endpointFailureMinDeliveries'),
      [1, 1_000_000],
    ),
  };
}

/** The stage's endpoints file: param endpointsFile, else endpoints/<stage>.yml when it exists, else none. */
async function endpointsFilePath(stage, param) {
  const { existsSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const root = fileURLToPath(new URL('..', import.meta.url));
  const chosen = String((await param('endpointsFile')) ?? '').trim();
  if (chosen) {
    const path = chosen.startsWith('/') ? chosen : `${root}${chosen}`;
    if (!existsSync(path)) fail(stage, `param 'endpointsFile' is '${chosen}': there is no such file`);
    return path;
  }
  const conventional = `${root}endpoints/${stage}.yml`;
  return existsSync(conventional) ? conventional : undefined;
}

/** A token bucket's burst: what lib/subscription/rate-limit.ts saves up (one second of requests, at least one). */
function burstOf(ratePerSecond) {
  return Math.max(1, Math.ceil(ratePerSecond));
}

/** Requests an instance can send in `availableMs` at `rateMilli` thousandths of a request per second. */
function deliverableIn(rateMilli, availableMs, burst = burstOf(rateMilli / 1000)) {
  return burst + Math.floor((rateMilli * availableMs) / 1_000_000);
}

/** The smallest whole number of milli-requests per second for which `enough` holds (it must be monotone). */
function smallestMilli(enough, highest = 100_000_000) {
  let low = 1;
  let high = highest;
  while (low < high) {
    const middle = Math.floor((low + high) / 2);
    if (enough(middle)) high = middle;
    else low = middle + 1;
  }
  return low;
}

/**
 * Refuses a rate-limited endpoint that cannot take a whole batch within one invocation: records still waiting for a
 * token at the deadline go back to the queue, and the same ones would wait again on every receive.
 */
function checkBatchFitsRate(stage, endpoint, { batchSize, timeoutS, deadlineMarginMs }) {
  const rate = endpoint.rateLimitPerSecond;
  if (rate === undefined) return;
  const availableMs = timeoutS * 1000 - deadlineMarginMs;
  const burst = burstOf(rate);
  // What it surely sends: the rate rounded down (1/60 is not 0.017), the burst of the configured rate itself.
  const deliverable = deliverableIn(milliDown(rate), availableMs, burst);
  if (batchSize <= deliverable) return;
  const neededRate = smallestMilli((milli) => deliverableIn(milli, availableMs) >= batchSize) / 1000;
  fail(
    stage,
    `endpoint '${endpoint.name}': rateLimitPerSecond ${rate} lets an instance send at most ${deliverable} requests ` +
      `in one invocation (${burst} at once + ${rate}/s × ${availableMs / 1000} s: timeoutS ${timeoutS} less ` +
      `DEADLINE_MARGIN_MS ${deadlineMarginMs}), but batchSize is ${batchSize}: the records left waiting would be ` +
      `received again and again until they reach the dead-letter queue. Lower batchSize to at most ${deliverable}, ` +
      `raise rateLimitPerSecond to at least ${neededRate}, or raise timeoutS`,
  );
}

// In whole milli-requests, so that 3 × 3.1 equals 9.3 rather than exceeding it: rounded to micro-requests first (which
// absorbs binary floating point), then a rate up and a budget down, so that neither is ever taken for more than it says.
const milliUp = (perSecond) => Math.ceil(Math.round(perSecond * 1_000_000) / 1000);
const milliDown = (perSecond) => Math.floor(Math.round(perSecond * 1_000_000) / 1000);

/**
 * The most requests an instance sends in any one second, in milli-requests: its full bucket (saved up during a pause)
 * at once, plus a second of refill. `ratePerSecond` is the configured value itself: the bucket holds ceil of it
 * (1.0004/s saves up 2), which rounding it first to thousandths would miss.
 */
function oneSecondMilli(ratePerSecond) {
  return burstOf(ratePerSecond) * 1000 + milliUp(ratePerSecond);
}

/** How many instances fit in an endpoint's global budget at their worst second (undefined: it declares none). */
function budgetInstances(endpoint) {
  if (endpoint.maxRatePerSecond === undefined || endpoint.rateLimitPerSecond === undefined) return undefined;
  return Math.floor(milliDown(endpoint.maxRatePerSecond) / oneSecondMilli(endpoint.rateLimitPerSecond));
}

/** Why an endpoint's worst second exceeds its budget, and the per-instance rate (or concurrency) that would fit. */
function overBudget(endpoint, maximumConcurrency, worstMilli) {
  const budgetMilli = milliDown(endpoint.maxRatePerSecond);
  const fittingMilli = smallestMilli((rate) => maximumConcurrency * oneSecondMilli(rate / 1000) > budgetMilli) - 1;
  const burst = burstOf(endpoint.rateLimitPerSecond);
  const fittingConcurrency = Math.floor(budgetMilli / oneSecondMilli(endpoint.rateLimitPerSecond));
  const fix =
    fittingMilli >= 1
      ? `lower rateLimitPerSecond to ${fittingMilli / 1000} or lower maximumConcurrency`
      : fittingConcurrency >= 2
        ? `lower maximumConcurrency to ${fittingConcurrency} (no rate of at least 0.001/s fits ${maximumConcurrency} instances)`
        : 'raise maxRatePerSecond: no rate of at least 0.001/s fits 2 instances (the fewest maximumConcurrency allows)';
  return (
    `endpoint '${endpoint.name}': maxRatePerSecond is ${endpoint.maxRatePerSecond}, but ${maximumConcurrency} ` +
    `instances (maximumConcurrency) × (a burst of ${burst} + rateLimitPerSecond ${endpoint.rateLimitPerSecond}) = ` +
    `${worstMilli / 1000} requests in one second: ${fix}`
  );
}

/**
 * Returns each endpoint's worst case across the fleet (maximumConcurrency instances, each at its own limits) and
 * refuses an endpoint whose declared global budget (maxRatePerSecond) that worst case could exceed, or whose rate
 * limit cannot take a batch within an invocation.
 */
export function checkRates(stage, config, { maximumConcurrency, batchSize, timeoutS }) {
  const lines = [`Stage '${stage}': worst case per endpoint with maximumConcurrency ${maximumConcurrency}:`];
  for (const endpoint of config.endpoints) {
    const connections = endpoint.maxConnections ?? config.endpointMaxConnections;
    const concurrency = maximumConcurrency * connections;
    const limit = endpoint.rateLimitPerSecond;
    const rateMilli = limit === undefined ? undefined : milliUp(limit);
    const worstMilli = limit === undefined ? undefined : maximumConcurrency * oneSecondMilli(limit);
    const budget = endpoint.maxRatePerSecond === undefined ? '' : ` (budget ${endpoint.maxRatePerSecond}/s)`;
    const rate =
      rateMilli === undefined
        ? 'no rate limit'
        : `${(maximumConcurrency * rateMilli) / 1000} requests/s, at most ${worstMilli / 1000} in one second`;
    lines.push(
      `  ${endpoint.name}: ${rate}${budget}, ${concurrency} concurrent requests (${maximumConcurrency} × ${connections})`,
    );
    if (endpoint.maxRatePerSecond !== undefined && worstMilli > milliDown(endpoint.maxRatePerSecond)) {
      fail(stage, overBudget(endpoint, maximumConcurrency, worstMilli));
    }
    checkBatchFitsRate(stage, endpoint, { batchSize, timeoutS, deadlineMarginMs: config.deadlineMarginMs });
  }
  return lines;
}

function stageOf(context) {
  // The framework resolves in passes and rejects lookups of not-yet-available sources (stage params) in the
  // first: remember only a successful load.
  pending ??= load(context).catch((error) => {
    if (error instanceof StageConfigError) stop(error);
    pending = undefined;
    throw error;
  });
  return pending;
}

/** AWS: at least 6 × the function timeout plus the batching window, so no batch is seen twice while in flight. */
export async function queueVisibilityTimeoutS(context) {
  const stage = await stageOf(context);
  return 6 * stage.timeoutS + stage.windowS;
}

/** A day beyond the longest a record can wait before a redrive: in the source queue, then in the DLQ. */
export const LEDGER_TTL_MARGIN_S = 86_400;

/** DELIVERY_LEDGER_TTL_S: a late redrive must still find what each endpoint already accepted. */
export async function ledgerTtlS(context) {
  // Part of the environment that load() reads: computed from the params alone (checked there), not from load().
  const param = (name) => context.resolveVariable(`param:${name}`);
  const [stage, queue, dlq] = await Promise.all([
    context.resolveVariable('sls:stage'),
    param('queueRetentionS'),
    param('dlqRetentionS'),
  ]);
  return (
    integer(stage, 'queueRetentionS', queue, LIMITS.retentionS) +
    integer(stage, 'dlqRetentionS', dlq, LIMITS.retentionS) +
    LEDGER_TTL_MARGIN_S
  );
}

/**
 * Error alarms look back over more than one visibility timeout (in 60 s periods, firing on one data point): a batch
 * that fails whole comes back only that often, so one failing batch must be enough to alarm.
 */
export async function errorAlarmPeriods(context) {
  return Math.ceil((await queueVisibilityTimeoutS(context)) / 60) + 1;
}

/** How long a record failing at every receive takes from its first failure to its last (s), at least and at most. */
export function failingRecordLifeS({ maxReceiveCount, baseDelayS, maxDelayS, windowS, timeoutS }) {
  let shortest = 0;
  // lib/settle/backoff.ts jitters each delay d within [d/2, d]; an endpoint's Retry-After can stretch it to the cap.
  for (let receive = 1; receive < maxReceiveCount; receive++) {
    shortest += Math.ceil(Math.min(maxDelayS, baseDelayS * 2 ** (receive - 1)) / 2);
  }
  // Each wait then ends with a batching window and an invocation at most.
  return { shortest, longest: (maxReceiveCount - 1) * (maxDelayS + windowS + timeoutS) };
}

/** CloudWatch: an alarm's evaluation range (periods × period) is at most a day for periods under an hour. */
const MINUTE_ALARM_RANGE_LIMIT_S = 86_400;

/** The fewest consecutive waits of a failing record that surely last `periodS` together (Infinity: none). */
function wholeWaitsSpanning({ maxReceiveCount, baseDelayS, maxDelayS }, periodS) {
  // lib/settle/backoff.ts jitters each delay d within [d/2, d]: the shortest the receive-th wait can be.
  const shortest = (receive) => Math.ceil(Math.min(maxDelayS, baseDelayS * 2 ** (receive - 1)) / 2);
  let fewest = Number.POSITIVE_INFINITY;
  let sum = 0;
  let first = 1;
  for (let last = 1; last < maxReceiveCount; last++) {
    sum += shortest(last);
    while (sum - shortest(first) >= periodS) sum -= shortest(first++);
    if (sum >= periodS) fewest = Math.min(fewest, last - first + 1);
  }
  return fewest;
}

/**
 * Period and M of N of the "still failing" alarms (records-failing, endpoint-down), so that one record failing at
 * every receive until the DLQ always raises them. A period longer than any wait between two receives (the longest
 * backoff, the batching window and one invocation) puts every receive in the same or the next period: two
 * consecutive periods then suffice when the record lives at least one period. A shorter life needs one-minute
 * periods: two failures k waits apart fall in two different minutes when those k waits surely last a minute, and the
 * alarm looks back over the longest k waits can take (k as small as the backoff allows, not the whole life).
 */
export function outageAlarmEvaluation(stage, params) {
  const redeliveryS = Math.ceil((params.maxDelayS + params.windowS + params.timeoutS) / 60) * 60;
  const { shortest } = failingRecordLifeS(params);
  if (shortest >= redeliveryS) return { periodS: redeliveryS, evaluationPeriods: 2, datapointsToAlarm: 2 };
  if (shortest < 60) {
    let receives = params.maxReceiveCount;
    while (
      receives <= LIMITS.maxReceiveCount[1] &&
      failingRecordLifeS({ ...params, maxReceiveCount: receives }).shortest < 60
    )
      receives++;
    fail(
      stage,
      `param 'maxReceiveCount' is ${params.maxReceiveCount}: a record failing at every receive reaches the ` +
        `dead-letter queue after as little as ${shortest} s (RETRY_BASE_DELAY_S ${params.baseDelayS} doubling), ` +
        'too soon for the records-failing and endpoint-down alarms to see it fail in two different minutes: an ' +
        'outage could go unalarmed until records are dead-lettered. ' +
        (receives <= LIMITS.maxReceiveCount[1]
          ? `Raise maxReceiveCount to at least ${receives} (or RETRY_BASE_DELAY_S)`
          : `Raise RETRY_BASE_DELAY_S (no maxReceiveCount up to ${LIMITS.maxReceiveCount[1]} is enough with ${params.baseDelayS})`),
    );
  }
  const periodS = 60;
  const waits = wholeWaitsSpanning(params, periodS);
  const evaluationPeriods = Math.ceil((waits * (params.maxDelayS + params.windowS + params.timeoutS)) / periodS) + 1;
  if (periodS * evaluationPeriods > MINUTE_ALARM_RANGE_LIMIT_S) {
    fail(
      stage,
      `the records-failing and endpoint-down alarms would look back ${evaluationPeriods} × ${periodS} s to see a ` +
        `failing record fail in two different minutes (${waits} waits of up to RETRY_MAX_DELAY_S), over ` +
        `CloudWatch's ${MINUTE_ALARM_RANGE_LIMIT_S} s for periods under an hour: raise maxReceiveCount or lower ` +
        'RETRY_MAX_DELAY_S ' +
        '(param retryMaxDelayS)',
    );
  }
  return { periodS, evaluationPeriods, datapointsToAlarm: 2 };
}

/** The wording of the still-failing alarms' rule, for their descriptions. */
function outageRule({ periodS, evaluationPeriods, datapointsToAlarm }) {
  return evaluationPeriods === 2 && datapointsToAlarm === 2
    ? `two consecutive ${periodS / 60}-minute periods`
    : `${datapointsToAlarm} of ${evaluationPeriods} ${periodS / 60}-minute periods`;
}

/** The queue-age alarm's threshold (s), checked by load(). */
export async function queueAgeAlarmS(context) {
  return (await stageOf(context)).queueAgeAlarmS;
}

/** esbuild `define` value: the endpoints file as a JavaScript string literal ('""' when the stage has none). */
export async function endpointsBundle(context) {
  return JSON.stringify((await stageOf(context)).endpointsBundle);
}

/** The validated batch size (at most 10 for FIFO queues). */
export async function batchSize(context) {
  return (await stageOf(context)).batchSize;
}

/**
 * Where every alarm notifies: the given topic, else a topic of the stack subscribing the e-mail address, else nowhere.
 * Decided here because the stage is known: the template carries no condition whose operands are constants.
 */
function alarmActions(stage) {
  if (stage.alarmTopicArn) return [stage.alarmTopicArn];
  if (stage.alarmEmail) return [{ Ref: 'AlarmTopic' }];
  return [];
}

/** AlarmActions and OKActions of an alarm, or nothing when the stage notifies nowhere (CloudWatch refuses []). */
function notifications(stage) {
  const actions = alarmActions(stage);
  return actions.length ? { AlarmActions: actions, OKActions: actions } : {};
}

/** The SNS topic subscribing alarmEmail, when the stage gives an e-mail address and no topic of its own. */
function alarmTopic(stage) {
  if (stage.alarmTopicArn || !stage.alarmEmail) return { Resources: {}, Outputs: {} };
  const name = `${stage.service}-${stage.stage}`;
  return {
    Resources: {
      AlarmTopic: {
        Type: 'AWS::SNS::Topic',
        Properties: { TopicName: `${name}-alarms`, DisplayName: `${stage.service} ${stage.stage} alarms` },
      },
      AlarmTopicEmailSubscription: {
        Type: 'AWS::SNS::Subscription',
        Properties: { TopicArn: { Ref: 'AlarmTopic' }, Protocol: 'email', Endpoint: stage.alarmEmail },
      },
    },
    Outputs: { AlarmTopicArn: { Value: { Ref: 'AlarmTopic' } } },
  };
}

/** FIFO stages: both queues become FIFO (names end in .fifo); standard stages keep infra/queues.yml as written. */
function fifoQueues(stage) {
  if (!stage.fifo) return {};
  const name = (suffix) => `${stage.service}-${stage.stage}-${suffix}.fifo`;
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

function endpointAlarm(stage, endpoint) {
  const dimension = [{ Name: 'endpoint', Value: endpoint.name }];
  const metric = (id, metricName) => customMetric(stage, id, metricName, 60, dimension);
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmName: `${stage.service}-${stage.stage}-endpoint-${endpoint.name}-failure-rate`,
      AlarmDescription:
        `More than ${stage.failureRatePct}% of deliveries to endpoint '${endpoint.name}' failed (after retries) in 3 ` +
        `of the last 5 minutes, counting only minutes with at least ${stage.failureMinDeliveries} deliveries (only events routed to it count). ` +
        'Failures are 5xx, 408/429, timeouts, resets, 401/403 (our credentials refused even after a refresh: check ' +
        'ENDPOINT_CREDENTIALS or the endpoints file) and other 4xx such as 404/405/409/410 (the endpoint, not the event); 400/413/415/422 ' +
        'blame the event and are quarantined. ' +
        'Run the "Delivery failures by endpoint and status" query; docs/operations.md, Alarms and what to do, says what to do.',
      Metrics: [
        metric('ok', stage.metric.DeliverySucceeded),
        metric('ko', stage.metric.DeliveryFailed),
        // A minute with no successes has no DeliverySucceeded point: fill with 0, or an outage would never alarm.
        {
          Id: 'rate',
          Label: `${endpoint.name} failure rate (%)`,
          ReturnData: true,
          Expression: `IF((FILL(ok, 0) + FILL(ko, 0)) >= ${stage.failureMinDeliveries}, 100 * FILL(ko, 0) / (FILL(ok, 0) + FILL(ko, 0)), 0)`,
        },
      ],
      Threshold: stage.failureRatePct,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 5,
      DatapointsToAlarm: 3,
      TreatMissingData: 'notBreaching',
      ...notifications(stage),
    },
  };
}

function customMetric(stage, id, metricName, period, dimensions = []) {
  return {
    Id: id,
    ReturnData: false,
    MetricStat: {
      Metric: {
        Namespace: stage.namespace,
        MetricName: metricName,
        Dimensions: [{ Name: 'service', Value: stage.serviceDimension }, ...dimensions],
      },
      Period: period,
      Stat: 'Sum',
    },
  };
}

/** An endpoint refusing everything alarms whatever its traffic: failures and no success in two redelivery periods. */
function endpointDownAlarm(stage, endpoint) {
  const outage = stage.outageAlarm;
  const period = outage.periodS;
  const dimension = [{ Name: 'endpoint', Value: endpoint.name }];
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmName: `${stage.service}-${stage.stage}-endpoint-${endpoint.name}-down`,
      AlarmDescription:
        `Every delivery to endpoint '${endpoint.name}' failed, none succeeded, in ${outageRule(outage)} ` +
        '(whatever the traffic: a failing record fails in at least two of them). Its records wait in ' +
        'backoff and reach the DLQ after maxReceiveCount receives. Run the "Delivery failures by endpoint and status" query.',
      Metrics: [
        customMetric(stage, 'ok', stage.metric.DeliverySucceeded, period, dimension),
        customMetric(stage, 'ko', stage.metric.DeliveryFailed, period, dimension),
        {
          Id: 'down',
          Label: `${endpoint.name} failing with no success`,
          ReturnData: true,
          Expression: 'IF(FILL(ko, 0) > 0 AND FILL(ok, 0) == 0, 1, 0)',
        },
      ],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: outage.evaluationPeriods,
      DatapointsToAlarm: outage.datapointsToAlarm,
      TreatMissingData: 'notBreaching',
      ...notifications(stage),
    },
  };
}

/** Alarms on the code's own metrics that are not per endpoint: id → [metric, description, period, periods]. */
function batchAlarms(stage, errorPeriods) {
  const m = stage.metric;
  const outage = stage.outageAlarm;
  const specs = {
    RecordsFailingAlarm: [
      m.RecordsFailed,
      'records-failing',
      `Records failed (went back to the queue for another attempt) in ${outageRule(outage)}: an endpoint is ` +
        'down or refusing, or the deadline cuts deliveries off. SQS hides records in backoff ' +
        'from the queue-age metric, so this is the alarm that sees an outage. Check the dashboard, then the ' +
        '"Delivery failures by endpoint and status" query.',
      outage.periodS,
      outage.evaluationPeriods,
      outage.datapointsToAlarm,
    ],
    QuarantineErrorsAlarm: [
      m.QuarantineErrors,
      'quarantine-errors',
      'Poison records could not be sent to the DLQ (SQS error or AccessDenied): they stay on the source queue and ' +
        'come back until maxReceiveCount. The log line "quarantine failed" has the error.',
      60,
      errorPeriods,
      1,
    ],
    BackoffErrorsAlarm: [
      m.BackoffErrors,
      'backoff-errors',
      'Failed records could not be delayed (ChangeMessageVisibility failed): they come back after the full ' +
        'visibility timeout instead. The log line "visibility backoff failed" has the error.',
      60,
      errorPeriods,
      1,
    ],
    LedgerErrorsAlarm: [
      m.LedgerErrors,
      'ledger-errors',
      'The delivery ledger could not be read or written (DynamoDB error or AccessDenied): redeliveries reach ' +
        'endpoints that already accepted the event. The log lines "delivery ledger ..." have the error.',
      60,
      errorPeriods,
      1,
    ],
  };
  const alarms = {};
  for (const [id, [metricName, suffix, description, period, periods, datapoints]] of Object.entries(specs)) {
    alarms[id] = {
      Type: 'AWS::CloudWatch::Alarm',
      Properties: {
        AlarmName: `${stage.service}-${stage.stage}-${suffix}`,
        AlarmDescription: description,
        Namespace: stage.namespace,
        MetricName: metricName,
        Dimensions: [{ Name: 'service', Value: stage.serviceDimension }],
        Statistic: 'Sum',
        Period: period,
        EvaluationPeriods: periods,
        // Errors: one failing batch is enough; failures: they must persist (outageAlarmEvaluation).
        DatapointsToAlarm: datapoints,
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
        ...notifications(stage),
      },
    };
  }
  return alarms;
}

/**
 * Metrics the code emits that the dashboard leaves out on purpose, with why; every other emitted metric must be on
 * it (test/integration/telemetry.test.ts checks both against a real run).
 */
export const UNDISPLAYED_METRICS = {
  // Powertools' cold-start count (dimensions service + function_name): the duration widget's max shows cold starts.
  ColdStart: 'cold starts show as the maximum of the function duration',
};

/** CloudWatch rejects an alarm widget of more than 100 alarms (4 per endpoint with lanes): one widget per 100. */
export const ALARMS_PER_WIDGET = 100;

/** The first block sits in the grid; further blocks go full width below the last row (y 32). */
export function alarmWidgets(alarmIds) {
  const blocks = [];
  for (let i = 0; i < alarmIds.length; i += ALARMS_PER_WIDGET) blocks.push(alarmIds.slice(i, i + ALARMS_PER_WIDGET));
  return blocks.map((ids, k) => ({
    type: 'alarm',
    ...(k === 0 ? { x: 16, y: 14, width: 8, height: 6 } : { x: 0, y: 26 + 6 * k, width: 24, height: 6 }),
    properties: {
      title: blocks.length === 1 ? 'Alarms' : `Alarms (${k + 1} of ${blocks.length})`,
      alarms: ids.map((id) => `\${${id}.Arn}`),
    },
  }));
}

function dashboardBody(stage, alarmIds) {
  const region = '${AWS::Region}';
  const ns = stage.namespace;
  const svc = ['service', stage.serviceDimension];
  const lambda = (name, options) => ['AWS/Lambda', name, 'FunctionName', '${IngestLambdaFunction}', options];
  const queue = (name, queueName, options) => ['AWS/SQS', name, 'QueueName', queueName, options];
  const perEndpoint = (name, endpoint, options) => [ns, name, ...svc, 'endpoint', endpoint, options];
  const batch = (name, options) => [ns, name, ...svc, options];
  const m = stage.metric;
  const graph = (title, x, y, w, h, metrics, extra = {}) => {
    checkGraphMetrics(stage.stage, title, metrics.length, stage.endpoints.length);
    return {
      type: 'metric',
      x,
      y,
      width: w,
      height: h,
      properties: { title, region, view: 'timeSeries', period: 60, stat: 'Sum', metrics, ...extra },
    };
  };
  const alarms = ['DeadLetterQueueAlarm', 'QueueAgeAlarm', 'FunctionErrorsAlarm', ...alarmIds];
  const widgets = [
    {
      type: 'text',
      x: 0,
      y: 0,
      width: 24,
      height: 2,
      properties: {
        markdown:
          `## ${stage.service} · ${stage.stage}\n` +
          'Source queue `${IngestQueue.QueueName}`, dead-letter queue `${IngestDeadLetterQueue.QueueName}`, ' +
          'function `${IngestLambdaFunction}`. Saved Logs Insights queries: folder ' +
          `\`${stage.service}-${stage.stage}\`. What each alarm means and what to do: docs/operations.md, Alarms and what to do.`,
      },
    },
    graph(
      'Delivery success rate per endpoint (%)',
      0,
      2,
      12,
      6,
      stage.endpoints.flatMap((e, i) => [
        [{ expression: `100 * FILL(s${i}, 0) / (FILL(s${i}, 0) + FILL(f${i}, 0))`, label: e.name, id: `rate${i}` }],
        perEndpoint(m.DeliverySucceeded, e.name, { id: `s${i}`, visible: false }),
        perEndpoint(m.DeliveryFailed, e.name, { id: `f${i}`, visible: false }),
      ]),
      {
        yAxis: { left: { min: 0, max: 100, showUnits: false } },
        annotations: { horizontal: [{ label: 'alarm', value: 100 - stage.failureRatePct }] },
      },
    ),
    graph(
      'Delivery latency per endpoint (ms, p50 and p99)',
      12,
      2,
      12,
      6,
      stage.endpoints.flatMap((e) => [
        perEndpoint(m.DeliveryLatency, e.name, { stat: 'p50', label: `${e.name} p50` }),
        perEndpoint(m.DeliveryLatency, e.name, { stat: 'p99', label: `${e.name} p99` }),
      ]),
    ),
    graph(
      'Deliveries per endpoint (per minute)',
      0,
      8,
      12,
      6,
      stage.endpoints.flatMap((e) => [
        perEndpoint(m.DeliverySucceeded, e.name, { label: `${e.name} succeeded` }),
        perEndpoint(m.DeliveryFailed, e.name, { label: `${e.name} failed` }),
        perEndpoint(m.DeliveryRetries, e.name, { label: `${e.name} retries` }),
        perEndpoint(m.DeliverySkipped, e.name, { label: `${e.name} skipped (already delivered)` }),
      ]),
    ),
    graph('Records: acknowledged vs failed (per minute)', 12, 8, 12, 6, [
      batch(m.RecordsReceived, { label: 'received' }),
      batch(m.RecordsAcknowledged, { label: 'acknowledged' }),
      batch(m.RecordsFailed, { label: 'failed (back to the queue)' }),
      batch(m.RecordsInvalid, { label: 'invalid' }),
      batch(m.RecordsQuarantined, { label: 'quarantined' }),
      batch(m.RecordsRouted, { label: 'routed (to at least one endpoint)' }),
      batch(m.RecordsUnrouted, { label: 'unrouted (matched no filter; acknowledged)' }),
    ]),
    graph('Source queue: depth and age of oldest', 0, 14, 8, 6, [
      queue('ApproximateNumberOfMessagesVisible', '${IngestQueue.QueueName}', { stat: 'Maximum', label: 'waiting' }),
      queue('ApproximateNumberOfMessagesNotVisible', '${IngestQueue.QueueName}', {
        stat: 'Maximum',
        label: 'in flight or in backoff',
      }),
      queue('ApproximateAgeOfOldestMessage', '${IngestQueue.QueueName}', {
        stat: 'Maximum',
        label: 'oldest (s)',
        yAxis: 'right',
      }),
    ]),
    graph('Dead-letter queue depth', 8, 14, 8, 6, [
      queue('ApproximateNumberOfMessagesVisible', '${IngestDeadLetterQueue.QueueName}', {
        stat: 'Maximum',
        label: 'messages',
      }),
    ]),
    ...alarmWidgets(alarms),
    graph('Function duration (ms)', 0, 20, 8, 6, [
      lambda('Duration', { stat: 'Average', label: 'average' }),
      lambda('Duration', { stat: 'p99', label: 'p99' }),
      lambda('Duration', { stat: 'Maximum', label: 'max' }),
      batch(m.BatchDuration, { stat: 'p99', label: 'batch p99 (own measure)' }),
    ]),
    graph('Concurrency and invocations', 8, 20, 8, 6, [
      lambda('ConcurrentExecutions', { stat: 'Maximum', label: 'concurrent executions' }),
      lambda('Invocations', { label: 'invocations', yAxis: 'right' }),
      lambda('Errors', { label: 'errors', yAxis: 'right' }),
      lambda('Throttles', { label: 'throttles', yAxis: 'right' }),
    ]),
    graph('Deadline aborts and side-effect errors', 16, 20, 8, 6, [
      batch(m.DeadlineAborts, { label: 'deadline aborts' }),
      batch(m.QuarantineErrors, { label: 'quarantine errors' }),
      batch(m.BackoffErrors, { label: 'backoff errors' }),
      batch(m.LedgerErrors, { label: 'ledger errors' }),
    ]),
    ...laneWidgets(stage, graph, 32 + 6 * (alarmWidgets(alarms).length - 1)),
    {
      type: 'log',
      x: 0,
      y: 26,
      width: 24,
      height: 6,
      properties: {
        title: 'Latest delivery failures',
        region,
        view: 'table',
        query:
          "SOURCE '${IngestLogGroup}' | filter message in ['delivery failed', 'deliveries cut off by the deadline', " +
          '"deliveries not attempted: the endpoint\'s circuit breaker is open"] ' +
          '| fields @timestamp, endpoint, kind, status, error, attempts, records, eventId, messageId ' +
          '| sort @timestamp desc | limit 50',
      },
    },
  ];
  return JSON.stringify({ widgets });
}

/** EMF LaneBacklogAgeS (lib/lanes, per endpoint): the age of the oldest parked event a lane batch saw. */
const LANE_BACKLOG_AGE_METRIC = (stage) => stage.metric.LaneBacklogAgeS ?? 'LaneBacklogAgeS';

/** Stages with lanes: each endpoint's lane backlog (waiting, delayed, in flight) and its oldest parked event. */
function laneWidgets(stage, graph, y) {
  if (!stage.lanes) return [];
  const queue = (name, e, id) => [
    'AWS/SQS',
    name,
    'QueueName',
    `\${IngestLane${e.id}.QueueName}`,
    { id, stat: 'Maximum', visible: false },
  ];
  return [
    graph(
      'Lane backlog per endpoint (messages: waiting + delayed + in flight)',
      0,
      y,
      12,
      6,
      stage.endpoints.flatMap((e, i) => [
        [{ expression: `FILL(v${i}, 0) + FILL(d${i}, 0) + FILL(n${i}, 0)`, label: e.name, id: `lane${i}` }],
        queue('ApproximateNumberOfMessagesVisible', e, `v${i}`),
        queue('ApproximateNumberOfMessagesDelayed', e, `d${i}`),
        queue('ApproximateNumberOfMessagesNotVisible', e, `n${i}`),
      ]),
    ),
    graph(
      'Oldest parked event per endpoint (s since its first failure)',
      12,
      y,
      12,
      6,
      stage.endpoints.map((e) => [
        stage.namespace,
        LANE_BACKLOG_AGE_METRIC(stage),
        'service',
        stage.serviceDimension,
        'endpoint',
        e.name,
        { stat: 'Maximum', label: e.name },
      ]),
      { annotations: { horizontal: [{ label: 'alarm', value: stage.laneBacklogAgeAlarmS }] } },
    ),
  ];
}

/** A full secret ARN ends in '-' and the six characters Secrets Manager appends; a partial ARN stops at the name. */
const FULL_SECRET_ARN = /:secret:.+-[A-Za-z0-9]{6}$/;

/** The IAM resources matching one credential; IAM checks a secret by its full ARN, suffix included. */
export function credentialArns(ref) {
  if (ref.store === 'ssm') {
    if (ref.name.startsWith('arn:')) return [ref.name];
    return [
      {
        'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter/${ref.name.replace(/^\//, '')}`,
      },
    ];
  }
  if (ref.name.startsWith('arn:')) {
    // 'name-abcdef' may be a full ARN or a partial one whose name ends that way: allow both readings.
    return FULL_SECRET_ARN.test(ref.name) ? [ref.name, `${ref.name}-??????`] : [`${ref.name}-??????`];
  }
  return [
    { 'Fn::Sub': `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${ref.name}-??????` },
  ];
}

/** The encryption context each store passes to KMS (AWS docs): the parameter's or the secret's ARN. */
const KMS_CONTEXT_KEY = {
  ssm: 'kms:EncryptionContext:PARAMETER_ARN',
  secretsmanager: 'kms:EncryptionContext:SecretARN',
};

function credentialsPolicy(stage) {
  const byStore = { ssm: [], secretsmanager: [] };
  for (const ref of stage.credentials) byStore[ref.store].push(...credentialArns(ref));
  const statements = [];
  if (byStore.ssm.length) {
    statements.push({
      Sid: 'ReadEndpointCredentialParameters',
      Effect: 'Allow',
      Action: ['ssm:GetParameter'],
      Resource: byStore.ssm,
    });
  }
  if (byStore.secretsmanager.length) {
    statements.push({
      Sid: 'ReadEndpointCredentialSecrets',
      Effect: 'Allow',
      Action: ['secretsmanager:GetSecretValue'],
      Resource: byStore.secretsmanager,
    });
  }
  // Only for a customer-managed key (the AWS-managed aws/ssm and aws/secretsmanager keys need no grant), and only
  // through each store, for exactly these parameters and secrets.
  if (stage.kmsKeyArn) {
    for (const store of ['ssm', 'secretsmanager']) {
      if (!byStore[store].length) continue;
      statements.push({
        Sid: store === 'ssm' ? 'DecryptEndpointCredentialParameters' : 'DecryptEndpointCredentialSecrets',
        Effect: 'Allow',
        Action: ['kms:Decrypt'],
        Resource: stage.kmsKeyArn,
        Condition: {
          StringEquals: { 'kms:ViaService': { 'Fn::Sub': `${store}.\${AWS::Region}.amazonaws.com` } },
          StringLike: { [KMS_CONTEXT_KEY[store]]: byStore[store] },
        },
      });
    }
  }
  return {
    Type: 'AWS::IAM::Policy',
    Properties: {
      PolicyName: 'endpoint-credentials',
      Roles: [{ Ref: 'IngestRole' }],
      PolicyDocument: { Version: '2012-10-17', Statement: statements },
    },
  };
}

/**
 * The credentials policy under a logical id and name that change with its grants. A change then creates a new policy
 * before the function is updated, and CloudFormation deletes the old one only in its cleanup, after the update: a
 * renamed or removed credential stays readable until no version of the function uses it.
 */
export function namedByGrants(policy) {
  const hash = createHash('sha256').update(JSON.stringify(policy.Properties.PolicyDocument)).digest('hex').slice(0, 12);
  const named = { ...policy, Properties: { ...policy.Properties, PolicyName: `endpoint-credentials-${hash}` } };
  return [`IngestCredentialsPolicy${hash}`, named];
}

/** The alarms of infra/alarms.yml: they notify where the generated ones do. */
const STATIC_ALARM_IDS = ['DeadLetterQueueAlarm', 'QueueAgeAlarm', 'FunctionErrorsAlarm'];

/**
 * What serverless.yml and infra/*.yml leave to the stage: FIFO properties, the batching window (standard queues only)
 * and where alarms notify, as extensions of their resources.
 */
function stageExtensions(stage) {
  const extensions = fifoQueues(stage);
  // FIFO event sources take no batching window: the property is left out, not set under a condition.
  if (!stage.fifo) extensions[ESM_LOGICAL_ID] = { Properties: { MaximumBatchingWindowInSeconds: stage.windowS } };
  const actions = notifications(stage);
  if (actions.AlarmActions) for (const id of STATIC_ALARM_IDS) extensions[id] = { Properties: actions };
  return extensions;
}

/** Environment values as the framework writes them: numbers and booleans as strings, references as they are. */
function asCompiled(environment) {
  return Object.fromEntries(
    Object.entries(environment).map(([key, value]) => [
      key,
      typeof value === 'number' || typeof value === 'boolean' ? String(value) : value,
    ]),
  );
}

/** The generated resources, merged into the stack by serverless.yml's `resources` list. */
export async function resources(context) {
  const stage = await stageOf(context);
  const generated = batchAlarms(stage, await errorAlarmPeriods(context));
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
  const functionDependsOn = [];
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
