// Types of the exports of infra/stage.js that tests import (the framework calls the rest).
export const ENVIRONMENT_LIMIT_BYTES: number;
export const LEDGER_TTL_MARGIN_S: number;
export function credentialArns(ref: {
  store: 'ssm' | 'secretsmanager';
  name: string;
}): (string | { 'Fn::Sub': string })[];
export const UNDISPLAYED_METRICS: Record<string, string>;
export const DLQ_OPERATOR_WINDOW_S: number;
/** Throws a StageConfigError unless dlqRetentionS ≥ queueRetentionS + DLQ_OPERATOR_WINDOW_S. */
export function checkDlqRetention(stage: string, queueRetentionS: number, dlqRetentionS: number): void;
