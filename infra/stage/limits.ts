// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// Limits CloudFormation, Lambda, SQS and CloudWatch enforce only at deploy time, checked before packaging.

import { fail } from './errors';
import { LIMITS } from './params';

/** Lambda's limit on all environment variables together (keys and values), checked before any deploy. */
export const ENVIRONMENT_LIMIT_BYTES = 4096;

// A CloudFormation reference resolves at deploy time: count the longest a queue URL or table name can be.
const REFERENCE_BYTES = 256;

/** Refuses a function environment (references counted at their longest) over Lambda's limit, naming the largest. */
export function checkEnvironmentSize(stage: string, environment: Record<string, unknown>): void {
  const sizes = Object.entries(environment).map(([key, value]): [string, number] => [
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
export function checkFunctionName(stage: string, service: string, functionKey = 'ingest'): string {
  const name = `${service}-${stage}-${functionKey}`;
  if (name.length <= FUNCTION_NAME_LIMIT) return name;
  return fail(
    stage,
    `the function's name '${name}' has ${name.length} characters, over Lambda's ${FUNCTION_NAME_LIMIT}: use a stage ` +
      `name of at most ${FUNCTION_NAME_LIMIT - service.length - functionKey.length - 2} characters`,
  );
}

/** CloudWatch's limit on the metrics of one dashboard graph. */
export const METRICS_PER_GRAPH = 500;

/** Refuses a dashboard graph CloudWatch would reject; each endpoint adds the same number of metrics to it. */
export function checkGraphMetrics(stage: string, title: string, metricCount: number, endpointCount: number): void {
  if (metricCount <= METRICS_PER_GRAPH) return;
  const perEndpoint = Math.ceil(metricCount / Math.max(1, endpointCount));
  fail(
    stage,
    `the dashboard graph '${title}' would show ${metricCount} metrics (${perEndpoint} per endpoint × ` +
      `${endpointCount} endpoints), over CloudWatch's ${METRICS_PER_GRAPH} per graph: a stage takes at most ` +
      `${Math.floor(METRICS_PER_GRAPH / perEndpoint)} endpoints; split them over two stages`,
  );
}

/** How long a dead-lettered message must stay in the DLQ at least, for on-call to see, fix and redrive it. */
export const DLQ_OPERATOR_WINDOW_S = 7 * 86_400;

/**
 * SQS counts a DLQ message's retention from its ORIGINAL enqueue time: one that reached the DLQ late in the source
 * queue's retention must still have the operator window left there.
 */
export function checkDlqRetention(stage: string, queueRetentionS: number, dlqRetentionS: number): void {
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

type RetentionParam = 'timeoutS' | 'windowS' | 'maxReceiveCount' | 'retentionS' | 'retryMaxDelayS';

/**
 * A record must reach the DLQ well before SQS's retention deletes it: each receive can cost the function timeout
 * (plus the batching window) and then RETRY_MAX_DELAY_S of backoff, or the queue's own visibility timeout when the
 * backoff call fails. All receives together must take at most half the retention, which leaves the other half for
 * a backlog waiting before its first receive.
 */
export function checkRetention(
  stage: string,
  { timeoutS, windowS, maxReceiveCount, retentionS, retryMaxDelayS }: Record<RetentionParam, number>,
): void {
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
