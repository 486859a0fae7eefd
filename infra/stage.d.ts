// Types of the exports of infra/stage.js that tests import (the framework calls the rest).
export const ENVIRONMENT_LIMIT_BYTES: number;
export const LEDGER_TTL_MARGIN_S: number;
export function credentialArns(ref: {
  store: 'ssm' | 'secretsmanager';
  name: string;
}): (string | { 'Fn::Sub': string })[];
export const UNDISPLAYED_METRICS: Record<string, string>;
/** Each endpoint's worst case across the fleet, as printed by `npm run package`; throws when a stage breaks a limit. */
export function checkRates(
  stage: string,
  config: {
    endpointMaxConnections: number;
    deadlineMarginMs: number;
    endpoints: readonly {
      name: string;
      maxConnections?: number;
      rateLimitPerSecond?: number;
      maxRatePerSecond?: number;
    }[];
  },
  limits: { maximumConcurrency: number; batchSize: number; timeoutS: number },
): string[];
export function kmsKeyArn(stage: string, region: string, value: unknown): string;
export function checkPlainParams(
  stage: string,
  region: string,
  params: Record<'queueAgeAlarmS' | 'alarmTopicArn' | 'alarmEmail' | 'memorySize' | 'logRetentionDays', unknown>,
): {
  queueAgeAlarmS: number;
  alarmTopicArn: string;
  alarmEmail: string;
  memorySize: number;
  logRetentionDays: number;
};
export const ALARMS_PER_WIDGET: number;
export function alarmWidgets(alarmIds: string[]): {
  type: 'alarm';
  x: number;
  y: number;
  width: number;
  height: number;
  properties: { title: string; alarms: string[] };
}[];
export const DLQ_OPERATOR_WINDOW_S: number;
/** Throws a StageConfigError unless dlqRetentionS ≥ queueRetentionS + DLQ_OPERATOR_WINDOW_S. */
export function checkDlqRetention(stage: string, queueRetentionS: number, dlqRetentionS: number): void;
export const FUNCTION_NAME_LIMIT: number;
/** The function's name, or a StageConfigError naming the longest stage name that fits. */
export function checkFunctionName(stage: string, service: string, functionKey?: string): string;
/** The stage's endpoints checked as deployed (no plain http to a loopback host); a StageConfigError otherwise. */
export function checkEndpoints(
  stage: string,
  env: Record<string, string>,
  file: string | undefined,
): Promise<{ config: { endpoints: readonly { name: string }[] } }>;
export const METRICS_PER_GRAPH: number;
/** Throws a StageConfigError when a dashboard graph would hold more metrics than CloudWatch allows. */
export function checkGraphMetrics(stage: string, title: string, metricCount: number, endpointCount: number): void;
export interface OutageParams {
  maxReceiveCount: number;
  baseDelayS: number;
  maxDelayS: number;
  windowS: number;
  timeoutS: number;
}
/** How long a record failing at every receive takes from its first failure to its last (s), at least and at most. */
export function failingRecordLifeS(params: OutageParams): { shortest: number; longest: number };
/** Period and M of N of the records-failing and endpoint-down alarms; throws when no setting can see every outage. */
export function outageAlarmEvaluation(
  stage: string,
  params: OutageParams,
): { periodS: number; evaluationPeriods: number; datapointsToAlarm: number };
/** The credentials policy under a logical id and PolicyName that change with its grants: [logical id, resource]. */
export function namedByGrants<P extends { Properties: { PolicyDocument: unknown } }>(policy: P): [string, P];
