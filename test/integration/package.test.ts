// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetricName } from '../../lib/observability/observability';
import { credentialsPolicyId } from '../support/package-stack';

// `npm run package` (osls + serverless-esbuild) offline, then the CloudFormation template and the artifact it wrote.
const root = new URL('../..', import.meta.url).pathname;
const run = promisify(execFile);

type Json = Record<string, unknown>;
interface Resource {
  Type: string;
  Condition?: string;
  DependsOn?: string[];
  Properties: Json;
}
interface Template {
  Resources: Record<string, Resource>;
  Conditions?: Record<string, unknown>;
}

/** The environment `osls package` gets: no AWS credentials, region or profile of any kind. */
function offlineEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('AWS_')));
}

function packageStack(args: string[]) {
  return run('npx', ['osls', 'package', ...args], { cwd: root, env: offlineEnv(), maxBuffer: 16 * 1024 * 1024 });
}

/** File names and contents of a zip archive (stored or deflated entries, as serverless writes them). */
function readZip(path: string): Map<string, Buffer> {
  const zip = readFileSync(path);
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = zip.readUInt16LE(end + 10);
  let offset = zip.readUInt32LE(end + 16);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const method = zip.readUInt16LE(offset + 10);
    const compressed = zip.readUInt32LE(offset + 20);
    const nameLength = zip.readUInt16LE(offset + 28);
    const extra = zip.readUInt16LE(offset + 30);
    const comment = zip.readUInt16LE(offset + 32);
    const local = zip.readUInt32LE(offset + 42);
    const name = zip.toString('utf8', offset + 46, offset + 46 + nameLength);
    const dataStart = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const data = zip.subarray(dataStart, dataStart + compressed);
    files.set(name, method === 8 ? inflateRawSync(data) : Buffer.from(data));
    offset += 46 + nameLength + extra + comment;
  }
  return files;
}

/** The value at `path` inside a parsed template, or undefined. */
function at(value: unknown, ...path: (string | number)[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}

const ref = (id: string) => ({ Ref: id });
const getAtt = (id: string, attribute: string) => ({ 'Fn::GetAtt': [id, attribute] });

let template: Template;
let artifact: string;
let fifoTemplate: Template;
let variantDir: string;
let badCredentials: { code: number; output: string };
let exampleDir: string;
let exampleTemplate: Template;
let exampleOutput: string;
let overBudget: { code: number; output: string };
let badEndpointsFile: { code: number; output: string };

let badRetention: { code: number; output: string }[];

/** `osls print` (resolves the same variables as package, without building): its exit code and output. */
function printStack(args: string[]): Promise<{ code: number; output: string }> {
  return run('npx', ['osls', 'print', ...args], { cwd: root, env: offlineEnv(), maxBuffer: 16 * 1024 * 1024 }).then(
    () => ({ code: 0, output: '' }),
    (error: { code: number; stdout: string; stderr: string }) => ({
      code: error.code,
      output: `${error.stdout}${error.stderr}`,
    }),
  );
}

function resourcesOfType(t: Template, type: string): [string, Resource][] {
  return Object.entries(t.Resources).filter(([, r]) => r.Type === type);
}

function env(t: Template): Record<string, unknown> {
  return at(t.Resources.IngestLambdaFunction, 'Properties', 'Environment', 'Variables') as Record<string, unknown>;
}

beforeAll(async () => {
  // A stale build of another output format would be packaged as it is.
  rmSync(join(root, '.esbuild'), { recursive: true, force: true });
  rmSync(join(root, '.serverless'), { recursive: true, force: true });
  // A stage misconfiguration must stop packaging; `print` resolves the same variables without building.
  const failing = run('npx', ['osls', 'print', '--param=endpointCredentials=analytcs=bearer:ssm:/x'], {
    cwd: root,
    env: offlineEnv(),
  }).then(
    () => ({ code: 0, output: '' }),
    (error: { code: number; stdout: string; stderr: string }) => ({
      code: error.code,
      output: `${error.stdout}${error.stderr}`,
    }),
  );
  // The longest the SQS allows (1000 receives) with the default backoff cap cannot reach the DLQ within 4 days.
  const tooManyReceives = printStack(['--param=maxReceiveCount=1000']);
  const tooLongBackoff = printStack(['--param=retryMaxDelayS=43200']);
  // 4 receives dead-letter a failing record within 35 s: too soon for the outage alarms (issue 15, B4).
  const tooFewReceives = printStack(['--param=maxReceiveCount=4']);
  variantDir = mkdtempSync(join(tmpdir(), 'ingest-package-'));
  exampleDir = mkdtempSync(join(tmpdir(), 'ingest-package-example-'));
  const badFile = join(exampleDir, 'bad.yml');
  writeFileSync(
    badFile,
    'endpoints:\n  - name: audit\n    url: https://audit.example.com/in\n    signing:\n      scheme: standard-webhooks\n' +
      '      secrets:\n        - ssm: /ok\n        - ssm: not ok\n',
  );
  const stageChecks = Promise.all([
    printStack(['--stage', 'example', '--param=maximumConcurrency=100']),
    printStack(['--stage', 'example', `--param=endpointsFile=${badFile}`]),
  ]);
  const example = await packageStack(['--stage', 'example', '--package', exampleDir]);
  exampleOutput = `${example.stdout}${example.stderr}`;
  exampleTemplate = JSON.parse(readFileSync(join(exampleDir, 'cloudformation-template-update-stack.json'), 'utf8'));
  [overBudget, badEndpointsFile] = await stageChecks;
  await packageStack([
    '--param=fifo=true',
    '--param=batchSize=10',
    '--param=endpointCredentials=analytics=bearer:ssm:/ingest-fanout/dev/analytics-token,audit=hmac:secretsmanager:ingest-fanout/dev/audit-key',
    '--param=alarmEmail=oncall@example.com',
    '--package',
    variantDir,
  ]);
  fifoTemplate = JSON.parse(readFileSync(join(variantDir, 'cloudformation-template-update-stack.json'), 'utf8'));

  // Last, so that .serverless/ keeps the default stage's package (packaging elsewhere empties it).
  await run('npm', ['run', 'package'], { cwd: root, env: offlineEnv(), maxBuffer: 16 * 1024 * 1024 });
  template = JSON.parse(readFileSync(join(root, '.serverless/cloudformation-template-update-stack.json'), 'utf8'));
  artifact = join(root, '.serverless/ingest.zip');
  badCredentials = await failing;
  badRetention = await Promise.all([tooManyReceives, tooLongBackoff, tooFewReceives]);
}, 180_000);

afterAll(() => {
  if (variantDir) rmSync(variantDir, { recursive: true, force: true });
  if (exampleDir) rmSync(exampleDir, { recursive: true, force: true });
});

describe('npm run package with an endpoints file (endpoints/example.yml)', () => {
  it('bundles the file into the artifact and leaves the environment without ENDPOINTS', () => {
    const code = readZip(join(exampleDir, 'ingest.zip')).get('functions/ingest/handler.mjs')!.toString('utf8');
    expect(code).toContain('https://login.crm.example.com/oauth2/token');
    expect(code).toContain('com.example.order.');
    expect(env(exampleTemplate).ENDPOINTS).toBe('');
  });

  it("lets the function read exactly the file's secret references", () => {
    const statements = at(
      exampleTemplate.Resources[credentialsPolicyId(exampleTemplate)],
      'Properties',
      'PolicyDocument',
      'Statement',
    ) as Json[];
    expect(JSON.stringify(statements)).toContain('parameter/ingest-fanout/example/audit-signing-2026-11');
    expect(JSON.stringify(statements)).toContain('parameter/ingest-fanout/example/audit-signing-2026-05');
    expect(JSON.stringify(statements)).toContain('secret:ingest-fanout/example/crm-client-secret-??????');
    // References, never values, reach the template.
    expect(JSON.stringify(exampleTemplate)).not.toMatch(/whsec_/);
  });

  it("prints each endpoint's worst-case global rate and concurrency", () => {
    expect(exampleOutput).toContain("Stage 'example': worst case per endpoint with maximumConcurrency 10:");
    expect(exampleOutput).toContain('orders: no rate limit, 1000 concurrent requests (10 × 100)');
    expect(exampleOutput).toContain(
      'crm: 200 requests/s, at most 400 in one second (budget 500/s), 100 concurrent requests (10 × 10)',
    );
  });

  it('refuses a stage whose maximumConcurrency could exceed an endpoint budget, with the numbers', () => {
    expect(overBudget.code).not.toBe(0);
    expect(overBudget.output).toContain(
      "endpoint 'crm': maxRatePerSecond is 500, but 100 instances (maximumConcurrency) × (a burst of 20 + " +
        'rateLimitPerSecond 20) = 4000 requests in one second: lower rateLimitPerSecond to 2 or lower maximumConcurrency',
    );
  });

  it('refuses a bad endpoints file, naming the file, the endpoint and the field', () => {
    expect(badEndpointsFile.code).not.toBe(0);
    expect(badEndpointsFile.output).toMatch(
      /bad\.yml: endpoint 'audit' \(endpoints\[0\]\): signing\.secrets\[1\]\.ssm: is not an SSM parameter name .*\(the value is not shown: it may be a secret\)/,
    );
    // What was written where a secret's name belongs may be the secret itself (issue 15 D3).
    expect(badEndpointsFile.output).not.toContain('not ok');
  });
});

describe('npm run package', () => {
  it('builds an artifact under 5 MB: the minified ESM handler, its chunks and source maps, the AWS SDK inside', () => {
    expect(statSync(artifact).size).toBeLessThan(5 * 1024 * 1024);
    const files = readZip(artifact);
    const code = [...files].filter(([name]) => name.endsWith('.mjs'));
    expect(code.map(([name]) => name)).toContain('functions/ingest/handler.mjs');
    for (const [name] of code) expect(files.has(`${name}.map`)).toBe(true);
    const entry = files.get('functions/ingest/handler.mjs')!.toString('utf8');
    // The SDK is bundled, not imported from the nodejs24.x runtime.
    for (const [, text] of code) expect(text.toString('utf8')).not.toMatch(/from\s*"@aws-sdk\//);
    // Built-ins come through require(): an ESM import of node:http would load Node's internal undici at cold start.
    expect(entry).not.toMatch(/from\s*"node:https?"/);
    // Minified: names mangled, whitespace gone (unminified code averages some 30 characters a line).
    expect(entry).not.toContain('createIngest');
    expect(entry.length / entry.split('\n').length).toBeGreaterThan(1000);
    expect(entry).toContain('createRequire(import.meta.url)');
    expect(entry).toMatch(/sourceMappingURL=handler\.mjs\.map/);
  });

  it('leaves the ledger, credentials and tracer code out of what the handler loads at cold start', () => {
    const files = readZip(artifact);
    const text = (name: string) => files.get(`functions/ingest/${name}`)?.toString('utf8') ?? '';
    // Everything the entry imports statically, transitively: chunks loaded before the first batch.
    const loaded = new Set<string>();
    const visit = (name: string) => {
      if (loaded.has(name)) return;
      loaded.add(name);
      for (const match of text(name).matchAll(/(?:^|[;\s}])import\s*(?:[^"'();]*?from\s*)?"\.\/([^"]+\.mjs)"/g)) {
        visit(match[1]!);
      }
    };
    visit('handler.mjs');
    const eager = [...loaded].map(text).join('\n');
    expect(eager).not.toContain('BatchGetItemCommand');
    expect(eager).not.toContain('GetParameterCommand');
    expect(eager).not.toContain('aws-xray-sdk');
  });

  it('declares the function: nodejs24.x on arm64, X-Ray active, its configuration from the stack', () => {
    const fn = template.Resources.IngestLambdaFunction!;
    expect(fn.Properties).toMatchObject({
      Handler: 'functions/ingest/handler.handler',
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      TracingConfig: { Mode: 'Active' },
      MemorySize: 512,
      Timeout: 60,
      Role: getAtt('IngestRole', 'Arn'),
    });
    expect(env(template)).toMatchObject({
      ENDPOINTS: expect.stringMatching(/^analytics=https:\/\/.+,audit=https:\/\/.+$/),
      QUARANTINE_QUEUE_URL: ref('IngestDeadLetterQueue'),
      DELIVERY_LEDGER_TABLE: ref('DeliveryLedgerTable'),
      POWERTOOLS_SERVICE_NAME: 'ingest-fanout-dev',
      POWERTOOLS_METRICS_NAMESPACE: 'IngestFanout',
      NODE_OPTIONS: '--enable-source-maps',
    });
  });

  it('maps the source queue with partial batch responses, batch size, window and maximum concurrency', () => {
    const mappings = resourcesOfType(template, 'AWS::Lambda::EventSourceMapping');
    // The source queue's, and one per endpoint's lane (a standard stage has lanes by default; template.test.ts).
    expect(mappings.map(([id]) => id).sort()).toEqual([
      'IngestEventSourceMappingSQSIngestQueue',
      'IngestLaneEventSourceAnalytics',
      'IngestLaneEventSourceAudit',
    ]);
    const mapping = template.Resources.IngestEventSourceMappingSQSIngestQueue!;
    expect(mapping.Properties).toMatchObject({
      EventSourceArn: getAtt('IngestQueue', 'Arn'),
      FunctionName: getAtt('IngestLambdaFunction', 'Arn'),
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 100,
      MaximumBatchingWindowInSeconds: 5,
      ScalingConfig: { MaximumConcurrency: 10 },
    });
    // The stage is known when packaging: no condition is left for CloudFormation to evaluate.
    expect(template.Conditions).toBeUndefined();
  });

  it('redrives to the DLQ after at least 5 receives, with a visibility of at least 6 × timeout + window', () => {
    const queue = template.Resources.IngestQueue!.Properties;
    const dlq = template.Resources.IngestDeadLetterQueue!.Properties;
    expect(at(queue, 'RedrivePolicy', 'deadLetterTargetArn')).toEqual(getAtt('IngestDeadLetterQueue', 'Arn'));
    expect(at(queue, 'RedrivePolicy', 'maxReceiveCount')).toBeGreaterThanOrEqual(5);
    const timeout = template.Resources.IngestLambdaFunction!.Properties.Timeout as number;
    const window = 5;
    expect(queue.VisibilityTimeout).toBeGreaterThanOrEqual(6 * timeout + window);
    expect(dlq.MessageRetentionPeriod).toBe(14 * 24 * 3600);
    expect(dlq.MessageRetentionPeriod).toBeGreaterThan(queue.MessageRetentionPeriod as number);
    expect(queue.FifoQueue).toBeUndefined();
    expect(queue.QueueName).toBe('ingest-fanout-dev-ingest');
  });

  it('creates the ledger table on demand, keyed by id, with TTL on expiration', () => {
    expect(template.Resources.DeliveryLedgerTable!.Properties).toMatchObject({
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      TimeToLiveSpecification: { AttributeName: 'expiration', Enabled: true },
    });
  });

  it('keeps the function logs for the configured retention', () => {
    expect(template.Resources.IngestLogGroup!.Properties).toMatchObject({
      LogGroupName: '/aws/lambda/ingest-fanout-dev-ingest',
      RetentionInDays: 30,
    });
  });

  it('grants exactly the actions the function uses, on exactly this stack’s resources, no wildcard actions', () => {
    expect(template.Resources.IamRoleLambdaExecution).toBeUndefined();
    const statements = (
      template.Resources.IngestRole!.Properties.Policies as { PolicyDocument: { Statement: Json[] } }[]
    )
      .flatMap((policy) => policy.PolicyDocument.Statement)
      .map((s) => ({ actions: [s.Action].flat() as string[], resource: s.Resource, effect: s.Effect }));
    for (const s of statements) {
      expect(s.effect).toBe('Allow');
      for (const action of s.actions) expect(action).not.toContain('*');
    }
    const grants = Object.fromEntries(statements.map((s) => [s.actions.sort().join(' '), s.resource]));
    expect(grants).toEqual({
      'logs:CreateLogStream logs:PutLogEvents': getAtt('IngestLogGroup', 'Arn'),
      'sqs:ChangeMessageVisibility sqs:DeleteMessage sqs:GetQueueAttributes sqs:ReceiveMessage': getAtt(
        'IngestQueue',
        'Arn',
      ),
      'sqs:SendMessage': getAtt('IngestDeadLetterQueue', 'Arn'),
      'dynamodb:BatchGetItem dynamodb:BatchWriteItem': getAtt('DeliveryLedgerTable', 'Arn'),
      // X-Ray has no resource-level permissions.
      'xray:PutTelemetryRecords xray:PutTraceSegments': '*',
    });
    // No credentials configured: no access to SSM or Secrets Manager at all; the lanes' own policy is checked in
    // template.test.ts.
    expect(resourcesOfType(template, 'AWS::IAM::Policy').map(([id]) => id)).toEqual(['IngestLanesPolicy']);
  });

  it('alarms on DLQ messages, the oldest message age, function errors and each endpoint’s failure rate', () => {
    const alarms = Object.fromEntries(resourcesOfType(template, 'AWS::CloudWatch::Alarm'));
    const dlq = alarms.DeadLetterQueueAlarm!.Properties as { Metrics: { MetricStat?: { Metric: Json } }[] };
    expect(dlq.Metrics.flatMap((m) => (m.MetricStat ? [m.MetricStat.Metric] : []))).toEqual(
      ['ApproximateNumberOfMessagesVisible', 'NumberOfMessagesSent'].map((MetricName) => ({
        Namespace: 'AWS/SQS',
        MetricName,
        Dimensions: [{ Name: 'QueueName', Value: getAtt('IngestDeadLetterQueue', 'QueueName') }],
      })),
    );
    expect(dlq).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
    expect(alarms.QueueAgeAlarm!.Properties).toMatchObject({
      MetricName: 'ApproximateAgeOfOldestMessage',
      Dimensions: [{ Name: 'QueueName', Value: getAtt('IngestQueue', 'QueueName') }],
      Threshold: 900,
    });
    expect(alarms.FunctionErrorsAlarm!.Properties).toMatchObject({
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: ref('IngestLambdaFunction') }],
    });

    const endpointNames = String(env(template).ENDPOINTS)
      .split(',')
      .map((pair) => pair.split('=')[0]);
    const rateAlarms = Object.entries(alarms).filter(([id]) => id.startsWith('EndpointFailureRateAlarm'));
    expect(rateAlarms).toHaveLength(endpointNames.length);
    for (const name of endpointNames) {
      const alarm = rateAlarms.find(([, a]) =>
        (a.Properties.Metrics as Json[]).some((m) =>
          JSON.stringify(m).includes(`{"Name":"endpoint","Value":"${name}"}`),
        ),
      );
      expect(alarm, `failure-rate alarm for ${name}`).toBeDefined();
      const metrics = alarm![1].Properties.Metrics as {
        Id: string;
        MetricStat?: { Metric: { Namespace: string; MetricName: string; Dimensions: unknown } };
        Expression?: string;
      }[];
      const stats = metrics.filter((m) => m.MetricStat).map((m) => m.MetricStat!.Metric);
      expect(stats.map((m) => m.MetricName).sort()).toEqual([MetricName.DeliveryFailed, MetricName.DeliverySucceeded]);
      for (const metric of stats) {
        expect(metric.Namespace).toBe(env(template).POWERTOOLS_METRICS_NAMESPACE);
        expect(metric.Dimensions).toEqual([
          { Name: 'service', Value: env(template).POWERTOOLS_SERVICE_NAME },
          { Name: 'endpoint', Value: name },
        ]);
      }
      expect(metrics.find((m) => m.Expression)?.Expression).toMatch(
        /100 \* FILL\(ko, 0\) \/ \(FILL\(ok, 0\) \+ FILL\(ko, 0\)\)/,
      );
    }
    // Notifications are optional: without a topic or an e-mail, no SNS topic and no actions (CloudWatch refuses []).
    for (const [id, alarm] of Object.entries(alarms)) {
      expect(alarm.Properties.AlarmActions, id).toBeUndefined();
      expect(alarm.Properties.OKActions, id).toBeUndefined();
    }
    expect(template.Resources.AlarmTopic).toBeUndefined();
  });

  it('draws a dashboard whose body is valid JSON referring only to this stack’s resources', () => {
    const [[, dashboard]] = resourcesOfType(template, 'AWS::CloudWatch::Dashboard') as [[string, Resource]];
    const body = at(dashboard.Properties, 'DashboardBody', 'Fn::Sub') as string;
    const { widgets } = JSON.parse(body) as { widgets: { type: string; properties: Json & { title?: string } }[] };

    const placeholders = [...body.matchAll(/\$\{([^}]+)\}/g)].map((m) => m[1]!);
    for (const placeholder of placeholders) {
      const [id] = placeholder.split('.');
      if (!placeholder.startsWith('AWS::')) expect(template.Resources, placeholder).toHaveProperty(id!);
    }

    const titles = widgets.map((w) => w.properties.title).filter(Boolean);
    expect(titles).toEqual(
      expect.arrayContaining([
        'Delivery success rate per endpoint (%)',
        'Delivery latency per endpoint (ms, p50 and p99)',
        'Records: acknowledged vs failed (per minute)',
        'Source queue: depth and age of oldest',
        'Dead-letter queue depth',
        'Function duration (ms)',
        'Concurrency and invocations',
        'Alarms',
      ]),
    );
    const widget = (title: string) => JSON.stringify(widgets.find((w) => w.properties.title === title));
    for (const name of ['analytics', 'audit']) {
      expect(widget('Delivery success rate per endpoint (%)')).toContain(
        `"${MetricName.DeliverySucceeded}","service","ingest-fanout-dev","endpoint","${name}"`,
      );
      expect(widget('Delivery latency per endpoint (ms, p50 and p99)')).toContain(
        `"${MetricName.DeliveryLatency}","service","ingest-fanout-dev","endpoint","${name}"`,
      );
    }
    expect(widget('Records: acknowledged vs failed (per minute)')).toContain(MetricName.RecordsAcknowledged);
    expect(widget('Records: acknowledged vs failed (per minute)')).toContain(MetricName.RecordsFailed);
    expect(widget('Source queue: depth and age of oldest')).toContain('ApproximateAgeOfOldestMessage');
    expect(widget('Dead-letter queue depth')).toContain('${IngestDeadLetterQueue.QueueName}');
    expect(widget('Concurrency and invocations')).toContain('ConcurrentExecutions');
    const alarmArns = widgets.find((w) => w.type === 'alarm')!.properties.alarms as string[];
    expect(alarmArns.sort()).toEqual(
      resourcesOfType(template, 'AWS::CloudWatch::Alarm')
        .map(([id]) => `\${${id}.Arn}`)
        .sort(),
    );
  });

  it('saves Logs Insights queries over the function log group, matching the log lines the code writes', () => {
    const queries: Record<string, Json> = Object.fromEntries(
      resourcesOfType(template, 'AWS::Logs::QueryDefinition').map(([, q]) => [
        q.Properties.Name as string,
        q.Properties,
      ]),
    );
    for (const query of Object.values(queries)) expect(query.LogGroupNames).toEqual([ref('IngestLogGroup')]);
    expect(queries['ingest-fanout-dev/Event history by id']?.QueryString).toMatch(
      /filter eventId = '[A-Z_]+' or messageId = '[A-Z_]+'[\s\S]*sort @timestamp asc/,
    );
    expect(queries['ingest-fanout-dev/Delivery failures by endpoint and status']?.QueryString).toMatch(
      /filter message in \['delivery failed', [\s\S]*by endpoint, kind, status/,
    );
    expect(queries['ingest-fanout-dev/Quarantined records by reason']?.QueryString).toMatch(
      /filter message = 'record quarantined'[\s\S]*by reason/,
    );
    // Every message the queries filter on is one the code logs.
    const sources = readdirSync(join(root, 'lib'), { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts'))
      .map((file) => readFileSync(join(root, 'lib', file), 'utf8'))
      .join('\n');
    const messages = Object.values(queries).flatMap((q) => {
      const query = String(q.QueryString);
      const lists = [...query.matchAll(/message in \[([^\]]+)\]/g)].flatMap((m) =>
        [...m[1]!.matchAll(/'([^']+)'|"([^"]+)"/g)].map((s) => s[1] ?? s[2]!),
      );
      return [...[...query.matchAll(/message = '([^']+)'/g)].map((m) => m[1]!), ...lists];
    });
    expect(messages).toContain("deliveries not attempted: the endpoint's circuit breaker is open");
    expect(messages).toContain('deliveries not attempted: the endpoint is paused and its lane could not take them');
    for (const message of messages) {
      expect(sources.includes(`'${message}'`) || sources.includes(`"${message}"`), message).toBe(true);
    }
  });
});

describe('npm run package with stage params', () => {
  it('builds the FIFO variant: FIFO queues and DLQ, at most 10 records, no batching window', () => {
    expect(fifoTemplate.Conditions).toBeUndefined();
    const mapping = fifoTemplate.Resources.IngestEventSourceMappingSQSIngestQueue!;
    expect(mapping.Properties.BatchSize).toBe(10);
    expect(mapping.Properties).not.toHaveProperty('MaximumBatchingWindowInSeconds');
    expect(fifoTemplate.Resources.IngestQueue!.Properties).toMatchObject({
      QueueName: 'ingest-fanout-dev-ingest.fifo',
      FifoQueue: true,
      ContentBasedDeduplication: true,
      DeduplicationScope: 'messageGroup',
      FifoThroughputLimit: 'perMessageGroupId',
    });
    expect(fifoTemplate.Resources.IngestDeadLetterQueue!.Properties).toMatchObject({
      QueueName: 'ingest-fanout-dev-dlq.fifo',
      FifoQueue: true,
    });
    // No batching window: the visibility timeout is 6 × the timeout.
    expect(fifoTemplate.Resources.IngestQueue!.Properties.VisibilityTimeout).toBe(360);
  });

  it('lets the function read exactly the configured credentials, before any record arrives', () => {
    const policy = fifoTemplate.Resources[credentialsPolicyId(fifoTemplate)]!;
    expect(policy.Properties.Roles).toEqual([ref('IngestRole')]);
    expect(at(policy.Properties, 'PolicyDocument', 'Statement')).toEqual([
      {
        Sid: 'ReadEndpointCredentialParameters',
        Effect: 'Allow',
        Action: ['ssm:GetParameter'],
        Resource: [
          {
            'Fn::Sub':
              'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/ingest-fanout/dev/analytics-token',
          },
        ],
      },
      {
        Sid: 'ReadEndpointCredentialSecrets',
        Effect: 'Allow',
        Action: ['secretsmanager:GetSecretValue'],
        Resource: [
          {
            'Fn::Sub':
              'arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:ingest-fanout/dev/audit-key-??????',
          },
        ],
      },
    ]);
    expect(fifoTemplate.Resources.IngestEventSourceMappingSQSIngestQueue!.DependsOn).toContain(
      credentialsPolicyId(fifoTemplate),
    );
    expect(env(fifoTemplate).ENDPOINT_CREDENTIALS).toBe(
      'analytics=bearer:ssm:/ingest-fanout/dev/analytics-token,audit=hmac:secretsmanager:ingest-fanout/dev/audit-key',
    );
    expect(fifoTemplate.Resources.AlarmTopic!.Condition).toBeUndefined();
    for (const [id, alarm] of resourcesOfType(fifoTemplate, 'AWS::CloudWatch::Alarm')) {
      expect(alarm.Properties.AlarmActions, id).toEqual([ref('AlarmTopic')]);
    }
    expect(fifoTemplate.Resources.AlarmTopicEmailSubscription!.Properties).toMatchObject({
      Protocol: 'email',
      Endpoint: 'oncall@example.com',
    });
  });

  it('refuses a stage whose receives × backoff do not fit well inside the queue retention, naming the numbers', () => {
    const [receives, backoff, fewReceives] = badRetention;
    expect(fewReceives!.code).not.toBe(0);
    expect(fewReceives!.output).toContain(
      "Stage 'dev': param 'maxReceiveCount' is 4: a record failing at every receive reaches the dead-letter queue " +
        'after as little as 35 s',
    );
    expect(receives!.code).not.toBe(0);
    expect(receives!.output).toContain(
      "Stage 'dev': a failing record can take maxReceiveCount 1000 × 965 s (RETRY_MAX_DELAY_S 900 + timeoutS 60 + " +
        "batchingWindowS 5) = 965000 s to reach the dead-letter queue, more than half the source queue's retention " +
        '(queueRetentionS 345600 s)',
    );
    expect(backoff!.code).not.toBe(0);
    expect(backoff!.output).toContain('maxReceiveCount 10 × 43265 s (RETRY_MAX_DELAY_S 43200');
    expect(env(template).RETRY_MAX_DELAY_S).toBe('900');
    expect(template.Resources.IngestQueue!.Properties.MessageRetentionPeriod).toBe(345_600);
  });

  it('refuses to package a stage whose ENDPOINT_CREDENTIALS names an unknown endpoint, saying which, once', () => {
    const message =
      "Stage 'dev': ENDPOINT_CREDENTIALS: 'analytcs=bearer:ssm:/x' names endpoint 'analytcs', which is not in ENDPOINTS (analytics, audit)";
    expect(badCredentials.code).not.toBe(0);
    expect(badCredentials.output).toContain(message);
    // Not repeated for each variable that reads infra/stage.js, nor wrapped in the framework's resolution error.
    expect(badCredentials.output.split(message)).toHaveLength(2);
    expect(badCredentials.output).not.toContain('Cannot resolve serverless.yml');
  });
});
