// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// What serverless variables cannot do, for the stage being packaged: check the stage params with the function's own
// parsers (a bad ENDPOINTS or ENDPOINT_CREDENTIALS fails `npm run package`, not the first invocation in production),
// derive the queue's visibility timeout, and generate what depends on the endpoint list: one failure-rate alarm per
// endpoint, the dashboard and the IAM policy for the endpoint credentials.
// serverless.yml uses it as ${file(./infra/stage.js):<export>}; every export receives { resolveVariable,
// resolveConfigurationProperty } from the framework (osls, serverless v3 and v4 alike).

/** Lambda's limits for SQS event sources; FIFO queues take no batching window and at most 10 records. */
const LIMITS = { timeoutS: [1, 900], batchSizeStandard: [1, 10_000], batchSizeFifo: [1, 10], windowS: [0, 300] };
const ESM_LOGICAL_ID = 'IngestEventSourceMappingSQSIngestQueue';

let pending;

async function importTs(path) {
  // tsx (a dev dependency, like the framework itself) loads the TypeScript sources of lib/ as they are.
  const { tsImport } = await import('tsx/esm/api');
  return tsImport(path, import.meta.url);
}

function fail(stage, message) {
  const error = new Error(`Stage '${stage}': ${message}`);
  // The framework prints the stack; the message alone says what to fix.
  error.stack = error.message;
  throw error;
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
function checkRetention(stage, { timeoutS, windowS, maxReceiveCount, retentionS, retryMaxDelayS }) {
  const perReceiveS = Math.max(timeoutS + windowS + retryMaxDelayS, 6 * timeoutS + windowS);
  const worstS = maxReceiveCount * perReceiveS;
  if (worstS * 2 <= retentionS) return;
  fail(
    stage,
    `a failing record can take maxReceiveCount ${maxReceiveCount} × ${perReceiveS} s (RETRY_MAX_DELAY_S ` +
      `${retryMaxDelayS} + timeoutS ${timeoutS} + batchingWindowS ${windowS}) = ${worstS} s to reach the dead-letter ` +
      `queue, more than half the source queue's retention (queueRetentionS ${retentionS} s): SQS could delete it ` +
      'before it is dead-lettered. Lower RETRY_MAX_DELAY_S (param retryMaxDelayS) or maxReceiveCount, or raise ' +
      `queueRetentionS (at most 1209600) to at least ${worstS * 2}`,
  );
}

async function load({ resolveVariable, resolveConfigurationProperty }) {
  const param = (name) => resolveVariable(`param:${name}`);
  const [service, stage] = await Promise.all([resolveVariable('self:service'), resolveVariable('sls:stage')]);
  const fifoParam = await param('fifo');
  if (![true, false, 'true', 'false'].includes(fifoParam)) {
    fail(stage, `param 'fifo' is ${JSON.stringify(fifoParam)}: use true or false`);
  }
  const fifo = fifoParam === true || fifoParam === 'true';
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
  integer(stage, 'maximumConcurrency', await param('maximumConcurrency'), [2, 1000]);

  // The function's environment, as deployed; values that are CloudFormation references are checked by AWS.
  const environment = (await resolveConfigurationProperty(['provider', 'environment'])) ?? {};
  const env = Object.fromEntries(
    Object.entries(environment).filter(([, value]) => typeof value === 'string' || typeof value === 'number'),
  );
  for (const [key, value] of Object.entries(env)) env[key] = String(value);
  if (!env.ENDPOINTS?.trim()) {
    fail(
      stage,
      `param 'endpoints' is empty: list the stage's endpoints as name=url pairs in serverless.yml ` +
        `(params.${stage}.endpoints) or pass --param="endpoints=<name>=<url>,..."`,
    );
  }
  const [{ loadConfig }, { parseCredentialSpec }, { MetricName, METRICS_NAMESPACE }] = await Promise.all([
    importTs('../lib/config.ts'),
    importTs('../lib/credentials.ts'),
    importTs('../lib/observability.ts'),
  ]);
  let config;
  let credentials;
  try {
    config = loadConfig(env);
    credentials = parseCredentialSpec(
      env.ENDPOINT_CREDENTIALS,
      config.endpoints.map((e) => e.name),
    );
  } catch (error) {
    fail(stage, error instanceof Error ? error.message : String(error));
  }
  if (config.deadlineMarginMs >= timeoutS * 1000) {
    fail(
      stage,
      `DEADLINE_MARGIN_MS (${config.deadlineMarginMs}) leaves no time to deliver within timeoutS ${timeoutS}`,
    );
  }
  const maxReceiveCount = integer(stage, 'maxReceiveCount', await param('maxReceiveCount'), [1, 1000]);
  const retentionS = integer(stage, 'queueRetentionS', await param('queueRetentionS'), [60, 1_209_600]);
  checkRetention(stage, { timeoutS, windowS, maxReceiveCount, retentionS, retryMaxDelayS: config.retryMaxDelayS });
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
    timeoutS,
    windowS,
    batchSize,
    endpoints: config.endpoints.map((e) => ({ name: e.name, id: pascal(e.name) })),
    credentials,
    serviceDimension: env.POWERTOOLS_SERVICE_NAME || service,
    namespace: env.POWERTOOLS_METRICS_NAMESPACE || METRICS_NAMESPACE,
    metric: MetricName,
    kmsKeyArn: String((await param('credentialsKmsKeyArn')) ?? '').trim(),
    alarmTopicArn: String((await param('alarmTopicArn')) ?? '').trim(),
    failureRatePct: percent(stage, 'endpointFailureRatePct', await param('endpointFailureRatePct')),
    failureMinDeliveries: integer(
      stage,
      'endpointFailureMinDeliveries',
      await param('endpointFailureMinDeliveries'),
      [1, 1_000_000],
    ),
  };
}

function stageOf(context) {
  // The framework resolves in passes and rejects lookups of not-yet-available sources (stage params) in the
  // first: remember only a successful load.
  pending ??= load(context).catch((error) => {
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

/** 'true' or 'false', as a string for the IsFifo condition (CloudFormation compares strings). */
export async function fifo(context) {
  return String((await stageOf(context)).fifo);
}

/** The validated batch size (at most 10 for FIFO queues). */
export async function batchSize(context) {
  return (await stageOf(context)).batchSize;
}

/** The same notification targets as the alarms in infra/alarms.yml (whose conditions these are). */
function alarmActions(stage) {
  return {
    'Fn::If': [
      'HasAlarmTopicArn',
      [stage.alarmTopicArn],
      { 'Fn::If': ['CreateAlarmTopic', [{ Ref: 'AlarmTopic' }], { Ref: 'AWS::NoValue' }] },
    ],
  };
}

function endpointAlarm(stage, endpoint) {
  const metric = (id, metricName) => ({
    Id: id,
    ReturnData: false,
    MetricStat: {
      Metric: {
        Namespace: stage.namespace,
        MetricName: metricName,
        Dimensions: [
          { Name: 'service', Value: stage.serviceDimension },
          { Name: 'endpoint', Value: endpoint.name },
        ],
      },
      Period: 60,
      Stat: 'Sum',
    },
  });
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmName: `${stage.service}-${stage.stage}-endpoint-${endpoint.name}-failure-rate`,
      AlarmDescription:
        `More than ${stage.failureRatePct}% of deliveries to endpoint '${endpoint.name}' failed (after retries) in 3 ` +
        `of the last 5 minutes, counting only minutes with at least ${stage.failureMinDeliveries} deliveries. ` +
        'Failures are 5xx, 408/429, timeouts, resets, 401/403 (our credentials refused even after a refresh: check ' +
        'ENDPOINT_CREDENTIALS) and other 4xx such as 404/405/409/410 (the endpoint, not the event); 400/413/415/422 ' +
        'blame the event and are quarantined. ' +
        'Run the "Delivery failures by endpoint and status" query; the README\'s operations guide says what to do.',
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
      AlarmActions: alarmActions(stage),
      OKActions: alarmActions(stage),
    },
  };
}

function dashboardBody(stage) {
  const region = '${AWS::Region}';
  const ns = stage.namespace;
  const svc = ['service', stage.serviceDimension];
  const lambda = (name, options) => ['AWS/Lambda', name, 'FunctionName', '${IngestLambdaFunction}', options];
  const queue = (name, queueName, options) => ['AWS/SQS', name, 'QueueName', queueName, options];
  const perEndpoint = (name, endpoint, options) => [ns, name, ...svc, 'endpoint', endpoint, options];
  const batch = (name, options) => [ns, name, ...svc, options];
  const m = stage.metric;
  const graph = (title, x, y, w, h, metrics, extra = {}) => ({
    type: 'metric',
    x,
    y,
    width: w,
    height: h,
    properties: { title, region, view: 'timeSeries', period: 60, stat: 'Sum', metrics, ...extra },
  });
  const alarms = [
    'DeadLetterQueueAlarm',
    'QueueAgeAlarm',
    'FunctionErrorsAlarm',
    ...stage.endpoints.map((e) => `EndpointFailureRateAlarm${e.id}`),
  ];
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
          `\`${stage.service}-${stage.stage}\`. What each alarm means and what to do: README, Operations.`,
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
    {
      type: 'alarm',
      x: 16,
      y: 14,
      width: 8,
      height: 6,
      properties: { title: 'Alarms', alarms: alarms.map((id) => `\${${id}.Arn}`) },
    },
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
          "SOURCE '${IngestLogGroup}' | filter message = 'delivery failed' " +
          '| fields @timestamp, endpoint, kind, status, error, attempts, eventId, messageId ' +
          '| sort @timestamp desc | limit 50',
      },
    },
  ];
  return JSON.stringify({ widgets });
}

function credentialsPolicy(stage) {
  const arn = (ref) => {
    if (ref.name.startsWith('arn:')) return ref.name;
    if (ref.store === 'ssm') {
      return {
        'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter/${ref.name.replace(/^\//, '')}`,
      };
    }
    // Secrets Manager appends six random characters to a secret's name in its ARN.
    return {
      'Fn::Sub': `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${ref.name}-??????`,
    };
  };
  const ssm = stage.credentials.filter((ref) => ref.store === 'ssm');
  const secrets = stage.credentials.filter((ref) => ref.store === 'secretsmanager');
  const statements = [];
  if (ssm.length) {
    statements.push({
      Sid: 'ReadEndpointCredentialParameters',
      Effect: 'Allow',
      Action: ['ssm:GetParameter'],
      Resource: ssm.map(arn),
    });
  }
  if (secrets.length) {
    statements.push({
      Sid: 'ReadEndpointCredentialSecrets',
      Effect: 'Allow',
      Action: ['secretsmanager:GetSecretValue'],
      Resource: secrets.map(arn),
    });
  }
  // Only for a customer-managed key; the AWS-managed aws/ssm and aws/secretsmanager keys need no grant.
  if (stage.kmsKeyArn) {
    const services = [...(ssm.length ? ['ssm'] : []), ...(secrets.length ? ['secretsmanager'] : [])];
    statements.push({
      Sid: 'DecryptEndpointCredentials',
      Effect: 'Allow',
      Action: ['kms:Decrypt'],
      Resource: stage.kmsKeyArn,
      Condition: {
        StringEquals: { 'kms:ViaService': services.map((s) => ({ 'Fn::Sub': `${s}.\${AWS::Region}.amazonaws.com` })) },
      },
    });
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

/** The generated resources, merged into the stack by serverless.yml's `resources` list. */
export async function resources(context) {
  const stage = await stageOf(context);
  const generated = {};
  for (const endpoint of stage.endpoints) {
    generated[`EndpointFailureRateAlarm${endpoint.id}`] = endpointAlarm(stage, endpoint);
  }
  generated.IngestDashboard = {
    Type: 'AWS::CloudWatch::Dashboard',
    Properties: {
      DashboardName: `${stage.service}-${stage.stage}`,
      DashboardBody: { 'Fn::Sub': dashboardBody(stage) },
    },
  };
  const extensions = {};
  if (stage.credentials.length) {
    generated.IngestCredentialsPolicy = credentialsPolicy(stage);
    // Records start flowing only once the function may read its credentials.
    extensions[ESM_LOGICAL_ID] = { DependsOn: ['IngestCredentialsPolicy'] };
  }
  return { Resources: generated, extensions };
}
