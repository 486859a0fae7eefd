import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LIMITS, templateLimitErrors } from '../../../infra/stack-limits.cjs';
import {
  checkEndpoints,
  checkFunctionName,
  checkGraphMetrics,
  checkPlainParams,
  kmsKeyArn,
  type OutageParams,
  outageAlarmEvaluation,
} from '../../../infra/stage/index';
import { type AlarmSettings, failureTimes, firstAlarmAt, sums } from '../../support/alarm-sim';

// The pure checks of infra/stage/ that `npm run package` runs on the stage params (packaging itself is covered by
// test/integration/package.test.ts and template.test.ts).

describe('credentialsKmsKeyArn', () => {
  const key = 'arn:aws:kms:eu-west-1:123456789012:key/0d4c2b7e-1f3a-4c5d-9e8f-0a1b2c3d4e5f';

  it('accepts a key ARN in the stage region, and no key at all', () => {
    expect(kmsKeyArn('prod', 'eu-west-1', ` ${key} `)).toBe(key);
    expect(kmsKeyArn('prod', 'eu-west-1', 'arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd')).toMatch(/mrk-/);
    expect(kmsKeyArn('prod', 'eu-west-1', '')).toBe('');
    expect(kmsKeyArn('prod', 'eu-west-1', undefined)).toBe('');
  });

  it('refuses an alias, an alias ARN or a bare key id, which no kms:Decrypt grant would match', () => {
    for (const value of [
      'alias/ingest',
      'arn:aws:kms:eu-west-1:123456789012:alias/ingest',
      '0d4c2b7e-1f3a-4c5d-9e8f-0a1b2c3d4e5f',
    ]) {
      expect(() => kmsKeyArn('prod', 'eu-west-1', value), value).toThrow(
        `Stage 'prod': param 'credentialsKmsKeyArn' is '${value}': use the key's ARN, arn:aws:kms:eu-west-1:<account>:key/<key id>`,
      );
    }
  });

  it('refuses a key of another region', () => {
    expect(() => kmsKeyArn('prod', 'us-east-1', key)).toThrow(
      "param 'credentialsKmsKeyArn' is a key in eu-west-1, but the stage deploys to us-east-1",
    );
  });
});

describe('the params used verbatim by serverless.yml and infra/alarms.yml', () => {
  const good = {
    queueAgeAlarmS: 900,
    alarmTopicArn: '',
    alarmEmail: '',
    memorySize: 512,
    logRetentionDays: 30,
  };
  const check = (change: Partial<typeof good> | Record<string, unknown>) =>
    checkPlainParams('dev', 'us-east-1', { ...good, ...change });

  it('returns the checked values, numbers given as text included', () => {
    expect(
      check({
        queueAgeAlarmS: '600',
        memorySize: '1024',
        alarmTopicArn: 'arn:aws:sns:us-east-1:123456789012:oncall',
        alarmEmail: 'oncall@example.com',
      }),
    ).toEqual({
      queueAgeAlarmS: 600,
      alarmTopicArn: 'arn:aws:sns:us-east-1:123456789012:oncall',
      alarmEmail: 'oncall@example.com',
      memorySize: 1024,
      logRetentionDays: 30,
    });
  });

  it.each([
    [{ queueAgeAlarmS: '15m' }, `param 'queueAgeAlarmS' is "15m": use a whole number from 60 to 1209600`],
    [{ memorySize: 64 }, `param 'memorySize' is 64: use a whole number from 128 to 10240`],
    [{ logRetentionDays: 10 }, `param 'logRetentionDays' is 10: CloudWatch Logs accepts 1, 3, 5, 7, 14, 30`],
    [{ alarmTopicArn: 'oncall' }, `param 'alarmTopicArn' is 'oncall': use an SNS topic ARN`],
    [
      { alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:oncall' },
      `param 'alarmTopicArn' is a topic in eu-west-1, but the alarms are in us-east-1`,
    ],
    [{ alarmEmail: 'oncall.example.com' }, `param 'alarmEmail' is 'oncall.example.com': use one e-mail address`],
    [{ alarmEmail: 'a@example.com,b@example.com' }, `param 'alarmEmail' is 'a@example.com,b@example.com'`],
  ])('refuses %j naming the param', (change, message) => {
    expect(() => check(change)).toThrow(`Stage 'dev': ${message}`);
  });
});

describe('limits AWS would enforce only at deploy time (issue 15, B2)', () => {
  it('refuses a stage name that makes the function name longer than Lambda’s 64 characters', () => {
    const longest = 'a'.repeat(43);
    expect(checkFunctionName(longest, 'ingest-fanout')).toBe(`ingest-fanout-${longest}-ingest`);
    expect(() => checkFunctionName(`${longest}b`, 'ingest-fanout')).toThrow(
      `Stage '${longest}b': the function's name 'ingest-fanout-${longest}b-ingest' has 65 characters, over ` +
        "Lambda's 64: use a stage name of at most 43 characters",
    );
  });

  it('refuses a dashboard graph over CloudWatch’s 500 metrics, saying how many endpoints fit', () => {
    expect(() => checkGraphMetrics('dev', 'Deliveries', 500, 125)).not.toThrow();
    expect(() => checkGraphMetrics('dev', 'Deliveries', 520, 130)).toThrow(
      "Stage 'dev': the dashboard graph 'Deliveries' would show 520 metrics (4 per endpoint × 130 endpoints), over " +
        "CloudWatch's 500 per graph: a stage takes at most 125 endpoints; split them over two stages",
    );
  });

  const where = { stage: 'dev', region: 'us-east-1' };
  const queue = { Type: 'AWS::SQS::Queue', Properties: {} };
  const resources = (count: number) => Object.fromEntries(Array.from({ length: count }, (_, i) => [`Q${i}`, queue]));

  it('refuses more than 500 resources, and a template over 1 MB as the framework uploads it', () => {
    expect(templateLimitErrors({ Resources: resources(500) }, where)).toEqual([]);
    expect(templateLimitErrors({ Resources: resources(501) }, where)).toEqual([
      "Stage 'dev': the template has 501 resources, over CloudFormation's 500 per stack: each endpoint adds 2 alarms, " +
        'and with param lanes a lane (queue, event source, 2 alarms); split the endpoints over two stages',
    ]);
    const sized = (chars: number) => ({
      Resources: { Big: { Type: 'AWS::SQS::Queue', Properties: { QueueName: 'x'.repeat(chars) } } },
    });
    expect(templateLimitErrors(sized(LIMITS.MAX_TEMPLATE_BYTES - 200), where)).toEqual([]);
    expect(templateLimitErrors(sized(LIMITS.MAX_TEMPLATE_BYTES), where)).toEqual([
      expect.stringMatching(/^Stage 'dev': the template takes 1000\d{3} bytes, over CloudFormation's 1000000 \(1 MB\)/),
    ]);
    // The framework uploads the template minified (upload-artifacts.js: JSON.stringify without indentation): 400
    // resources of 2,400 characters fit, though their indentation alone would pass the megabyte when written out.
    const many = {
      Resources: Object.fromEntries(
        Array.from({ length: 400 }, (_, i) => [
          `Q${i}`,
          { Type: 'AWS::SQS::Queue', Properties: { QueueName: 'x'.repeat(2400) } },
        ]),
      ),
    };
    expect(Buffer.byteLength(JSON.stringify(many, null, 2))).toBeGreaterThan(LIMITS.MAX_TEMPLATE_BYTES);
    expect(templateLimitErrors(many, where)).toEqual([]);
  });

  it('refuses an alarm name over CloudWatch’s 255 characters or a description over 1,024 (a long endpoint name)', () => {
    const alarm = (name: string, description: string) => ({
      Resources: {
        EndpointDownAlarmX: {
          Type: 'AWS::CloudWatch::Alarm',
          Properties: { AlarmName: name, AlarmDescription: description },
        },
      },
    });
    expect(templateLimitErrors(alarm('a'.repeat(255), 'd'.repeat(1024)), where)).toEqual([]);
    expect(templateLimitErrors(alarm('a'.repeat(256), 'd'.repeat(1025)), where)).toEqual([
      "Stage 'dev': alarm EndpointDownAlarmX's name has 256 characters, over CloudWatch's 255: shorten the endpoint " +
        'or stage name it holds',
      "Stage 'dev': alarm EndpointDownAlarmX's description has 1025 characters, over CloudWatch's 1024: shorten the " +
        'endpoint or stage name it holds',
    ]);
  });

  it('refuses a role whose inline policies together pass IAM’s 10,240 characters, ARNs counted as resolved', () => {
    const statement = (i: number) => ({
      Effect: 'Allow',
      Action: ['ssm:GetParameter'],
      Resource: { 'Fn::Sub': `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter/p${i}` },
    });
    // Each statement is 118 characters once resolved ('aws-us-gov', the region, a 12-digit account).
    const template = (count: number) => ({
      Resources: {
        Role: {
          Type: 'AWS::IAM::Role',
          Properties: { Policies: [{ PolicyName: 'own', PolicyDocument: { Statement: [statement(0)] } }] },
        },
        Extra: {
          Type: 'AWS::IAM::Policy',
          Properties: {
            Roles: [{ Ref: 'Role' }],
            PolicyDocument: { Statement: Array.from({ length: count }, (_, i) => statement(10 + i)) },
          },
        },
      },
    });
    expect(templateLimitErrors(template(80), where)).toEqual([]);
    expect(templateLimitErrors(template(90), where)).toEqual([
      expect.stringMatching(
        /^Stage 'dev': role Role's inline policies take up to \d+ characters \(Role own: \d+, Extra: \d+\), over IAM's 10240 per role: reference fewer secrets/,
      ),
    ]);
    // The credentials policy is named after its grants (infra/stage/iam.ts namedByGrants): a changed one is created
    // beside its predecessor, deleted only in CloudFormation's cleanup, so the role must hold both at once.
    const hashed = (count: number) => {
      const { Extra, ...rest } = template(count).Resources;
      return { Resources: { ...rest, IngestCredentialsPolicy0123456789ab: Extra } };
    };
    expect(templateLimitErrors(hashed(42), where)).toEqual([]);
    expect(templateLimitErrors(hashed(45), where)).toEqual([
      expect.stringMatching(
        /^Stage 'dev': role Role's inline policies take up to \d+ characters \(Role own: \d+, IngestCredentialsPolicy0123456789ab: \d+ × 2: a changed credentials policy is created before the old one is deleted\), over IAM's 10240 per role: reference fewer secrets/,
      ),
    ]);
  });
});

describe('the records-failing and endpoint-down alarms see every outage the stage params allow (issue 15, B4)', () => {
  const defaults: OutageParams = { maxReceiveCount: 10, baseDelayS: 10, maxDelayS: 900, windowS: 5, timeoutS: 60 };
  const settings = (e: { periodS: number; evaluationPeriods: number; datapointsToAlarm: number }): AlarmSettings => ({
    Period: e.periodS,
    EvaluationPeriods: e.evaluationPeriods,
    DatapointsToAlarm: e.datapointsToAlarm,
    Threshold: 0,
    ComparisonOperator: 'GreaterThanThreshold',
    TreatMissingData: 'notBreaching',
  });
  /** One record failing at every receive until SQS dead-letters it, from `phase` s into a period. */
  const failing = (params: OutageParams, phase: number, jitter: number[], retryAfter: (number | undefined)[]) => {
    let i = 0;
    return failureTimes({
      startS: phase,
      maxReceiveCount: params.maxReceiveCount,
      policy: { baseDelayS: params.baseDelayS, maxDelayS: params.maxDelayS },
      random: () => jitter[i++ % jitter.length]!,
      pickupS: params.windowS + params.timeoutS,
      retryAfterS: (receive) => retryAfter[receive % retryAfter.length],
    });
  };
  const alarms = (alarm: AlarmSettings, times: number[]) =>
    firstAlarmAt(alarm, sums(times, alarm.Period, Math.max(...times) + 2 * alarm.Period * alarm.EvaluationPeriods)) !==
    undefined;
  const params = fc.record({
    maxReceiveCount: fc.integer({ min: 1, max: 16 }),
    baseDelayS: fc.constantFrom(1, 5, 10, 30),
    maxDelayS: fc.constantFrom(30, 60, 300, 900, 3600),
    windowS: fc.constantFrom(0, 5, 300),
    timeoutS: fc.constantFrom(10, 60, 900),
  });
  const jitters = fc.array(fc.double({ min: 0, max: 0.999999, noNaN: true }), { minLength: 40, maxLength: 40 });
  const retryAfters = fc.array(fc.option(fc.integer({ min: 1, max: 4000 }), { nil: undefined }), {
    minLength: 1,
    maxLength: 20,
  });

  it('keeps two consecutive 17-minute periods for the default stage', () => {
    expect(outageAlarmEvaluation('dev', defaults)).toEqual({
      periodS: 1020,
      evaluationPeriods: 2,
      datapointsToAlarm: 2,
    });
  });

  it('any accepted stage alarms on one record failing until the DLQ, whatever the jitter, Retry-After and phase', () => {
    fc.assert(
      fc.property(params, fc.nat(), jitters, retryAfters, (p, phase, jitter, retryAfter) => {
        const cap = { ...p, maxDelayS: Math.max(p.maxDelayS, p.baseDelayS) };
        let evaluation: ReturnType<typeof outageAlarmEvaluation>;
        try {
          evaluation = outageAlarmEvaluation('dev', cap);
        } catch (error) {
          expect(String(error)).toMatch(/Raise maxReceiveCount to at least \d+|raise maxReceiveCount or lower/);
          return;
        }
        const alarm = settings(evaluation);
        expect(alarm.Period % 60).toBe(0);
        // CloudWatch: a day at most for periods under an hour, 7 days otherwise.
        expect(alarm.Period * alarm.EvaluationPeriods).toBeLessThanOrEqual(alarm.Period < 3600 ? 86_400 : 604_800);
        expect(alarms(alarm, failing(cap, phase % alarm.Period, jitter, retryAfter))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('derives shorter periods for maxReceiveCount 5 to 8, which the former two 17-minute periods missed', () => {
    for (const maxReceiveCount of [5, 6, 7, 8]) {
      const stage = { ...defaults, maxReceiveCount };
      const former = settings({ periodS: 1020, evaluationPeriods: 2, datapointsToAlarm: 2 });
      const missed = fc.check(
        fc.property(fc.integer({ min: 0, max: 1019 }), jitters, (phase, jitter) =>
          alarms(former, failing(stage, phase, jitter, [undefined])),
        ),
        { numRuns: 300 },
      );
      expect(missed.failed, `maxReceiveCount ${maxReceiveCount}`).toBe(true);
      expect(outageAlarmEvaluation('dev', stage).periodS).toBeLessThan(1020);
    }
  });

  it('looks back over the shortest stretch of a record’s life that surely spans two periods, not its whole life', () => {
    // retryMaxDelayS at SQS's 12 h cap: receives 5 and 6 are at least 80 s apart and at most one long wait, so 2 of
    // 723 one-minute periods see them; the whole life (5 long waits) would take 1804 × 120 s, over CloudWatch's day,
    // and no maxReceiveCount the retention check allows (at most 6 with queueRetentionS 604800) would have fitted.
    const capped = { maxReceiveCount: 6, baseDelayS: 10, maxDelayS: 43_200, windowS: 5, timeoutS: 60 };
    expect(outageAlarmEvaluation('dev', capped)).toEqual({ periodS: 60, evaluationPeriods: 723, datapointsToAlarm: 2 });
  });

  it('refuses a stage whose record needs more than a day of one-minute periods to be seen failing twice', () => {
    // Receives 3 to 5 are at least 60 s apart, but the two waits between them can each take 12 h: 1444 minutes.
    const twoLongWaits = { maxReceiveCount: 5, baseDelayS: 10, maxDelayS: 43_200, windowS: 5, timeoutS: 60 };
    expect(() => outageAlarmEvaluation('dev', twoLongWaits)).toThrow(
      "Stage 'dev': the records-failing and endpoint-down alarms would look back 1444 × 60 s to see a failing record " +
        "fail in two different minutes (2 waits of up to RETRY_MAX_DELAY_S), over CloudWatch's 86400 s for periods " +
        'under an hour: raise maxReceiveCount or lower RETRY_MAX_DELAY_S (param retryMaxDelayS)',
    );
    expect(outageAlarmEvaluation('dev', { ...twoLongWaits, maxReceiveCount: 6 }).evaluationPeriods).toBe(723);
  });

  /** The refusal of a record dead-lettered within a minute, ending with its fix. */
  const tooSoon = (receives: number, lifeS: number, baseS: number, fix: string) =>
    `Stage 'dev': param 'maxReceiveCount' is ${receives}: a record failing at every receive reaches the dead-letter ` +
    `queue after as little as ${lifeS} s (RETRY_BASE_DELAY_S ${baseS} doubling), too soon for the records-failing and ` +
    'endpoint-down alarms to see it fail in two different minutes: an outage could go unalarmed until records are ' +
    `dead-lettered. ${fix}`;

  it('refuses a maxReceiveCount whose failing record reaches the DLQ within a minute, naming the least that works', () => {
    expect(() => outageAlarmEvaluation('dev', { ...defaults, maxReceiveCount: 4 })).toThrow(
      tooSoon(4, 35, 10, 'Raise maxReceiveCount to at least 5 (or RETRY_BASE_DELAY_S)'),
    );
    expect(() => outageAlarmEvaluation('dev', { ...defaults, maxReceiveCount: 5 })).not.toThrow();
  });

  it('asks for a RETRY_BASE_DELAY_S when no maxReceiveCount the stage allows (1 to 1000) would do', () => {
    // A base delay of 0 retries at once, whatever the receive count: the former message asked for 1026 receives.
    expect(() => outageAlarmEvaluation('dev', { ...defaults, baseDelayS: 0 })).toThrow(
      tooSoon(10, 0, 0, 'Raise RETRY_BASE_DELAY_S (no maxReceiveCount up to 1000 is enough with 0)'),
    );
  });
});

describe('the endpoints as packaged (issue 15, review)', () => {
  it('refuses plain http to a loopback host, which in Lambda is the Runtime API; https passes', () => {
    expect(() => checkEndpoints('prod', { ENDPOINTS: 'local=http://127.0.0.1:9/in' }, undefined)).toThrow(
      "Stage 'prod': ENDPOINTS: endpoint 'local' url: plain http (to a loopback host) is accepted only for local runs",
    );
    const { config } = checkEndpoints('prod', { ENDPOINTS: 'local=https://127.0.0.1:9/in' }, undefined);
    expect(config.endpoints.map((endpoint) => endpoint.name)).toEqual(['local']);
  });
});
