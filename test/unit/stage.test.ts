import { describe, expect, it } from 'vitest';
import { checkPlainParams, kmsKeyArn } from '../../infra/stage.js';

// The pure checks of infra/stage.js that `npm run package` runs on the stage params (packaging itself is covered by
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
