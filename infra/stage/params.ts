// The stage params as serverless.yml passes them: each checked and parsed, with the fix in the message.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fail } from './errors';

/** A stage param as the framework resolves it (`param:<name>`). */
export type Param = (name: string) => Promise<unknown>;
/** A closed range of whole numbers a param may take. */
export type Range = readonly [min: number, max: number];

/** Lambda's limits for SQS event sources; FIFO queues take no batching window and at most 10 records. */
export const LIMITS = {
  retentionS: [60, 1_209_600],
  timeoutS: [1, 900],
  batchSizeStandard: [1, 10_000],
  batchSizeFifo: [1, 10],
  windowS: [0, 300],
  maxReceiveCount: [1, 1000],
} as const satisfies Record<string, Range>;

/** A true/false param (YAML boolean, or the string of one from --param=name=value). */
export function flag(stage: string, name: string, value: unknown): boolean {
  if (value !== true && value !== false && value !== 'true' && value !== 'false') {
    fail(stage, `param '${name}' is ${JSON.stringify(value)}: use true or false`);
  }
  return value === true || value === 'true';
}

export function integer(stage: string, name: string, value: unknown, [min, max]: Range): number {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < min || number > max) {
    return fail(stage, `param '${name}' is ${JSON.stringify(value)}: use a whole number from ${min} to ${max}`);
  }
  return number;
}

export function percent(stage: string, name: string, value: unknown): number {
  const number = Number(value);
  if (value === '' || !(number > 0 && number < 100)) {
    fail(stage, `param '${name}' is ${JSON.stringify(value)}: use a percentage above 0 and below 100`);
  }
  return number;
}

/** A key ARN in the stage's region; IAM authorises kms:Decrypt on the key ARN, never on an alias or a bare id. */
export function kmsKeyArn(stage: string, region: string, value: unknown): string {
  const arn = String(value ?? '').trim();
  if (!arn) return '';
  const match = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):\d{12}:key\/[A-Za-z0-9-]+$/.exec(arn);
  if (!match) {
    return fail(
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

type PlainParam = 'queueAgeAlarmS' | 'alarmTopicArn' | 'alarmEmail' | 'memorySize' | 'logRetentionDays';

/** The params serverless.yml and infra/alarms.yml use verbatim: checked here, so a typo fails the package. */
export function checkPlainParams(
  stage: string,
  region: string,
  { queueAgeAlarmS, alarmTopicArn, alarmEmail, memorySize, logRetentionDays }: Record<PlainParam, unknown>,
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

/** The stage's endpoints file: param endpointsFile, else endpoints/<stage>.yml when it exists, else none. */
export async function endpointsFilePath(stage: string, param: Param): Promise<string | undefined> {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const chosen = String((await param('endpointsFile')) ?? '').trim();
  if (chosen) {
    const path = chosen.startsWith('/') ? chosen : `${root}${chosen}`;
    if (!existsSync(path)) fail(stage, `param 'endpointsFile' is '${chosen}': there is no such file`);
    return path;
  }
  const conventional = `${root}endpoints/${stage}.yml`;
  return existsSync(conventional) ? conventional : undefined;
}

/** An endpoint's name as a part of a logical id: 'order-events' → 'OrderEvents'. */
export function pascal(name: string): string {
  return name
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}
