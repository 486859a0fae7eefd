// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// When the still-failing alarms (records-failing, endpoint-down) look, so that one record failing until the DLQ raises them.

import { fail } from './errors';
import { LIMITS } from './params';

/** What a failing record's path to the DLQ depends on: receives, the backoff, the batching window, the timeout. */
export interface OutageParams {
  maxReceiveCount: number;
  baseDelayS: number;
  maxDelayS: number;
  windowS: number;
  timeoutS: number;
}

/** Period and M of N of an alarm. */
export interface OutageEvaluation {
  periodS: number;
  evaluationPeriods: number;
  datapointsToAlarm: number;
}

/** How long a record failing at every receive takes from its first failure to its last (s), at least and at most. */
export function failingRecordLifeS({ maxReceiveCount, baseDelayS, maxDelayS, windowS, timeoutS }: OutageParams): {
  shortest: number;
  longest: number;
} {
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
function wholeWaitsSpanning({ maxReceiveCount, baseDelayS, maxDelayS }: OutageParams, periodS: number): number {
  // lib/settle/backoff.ts jitters each delay d within [d/2, d]: the shortest the receive-th wait can be.
  const shortest = (receive: number) => Math.ceil(Math.min(maxDelayS, baseDelayS * 2 ** (receive - 1)) / 2);
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
export function outageAlarmEvaluation(stage: string, params: OutageParams): OutageEvaluation {
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
export function outageRule({ periodS, evaluationPeriods, datapointsToAlarm }: OutageEvaluation): string {
  return evaluationPeriods === 2 && datapointsToAlarm === 2
    ? `two consecutive ${periodS / 60}-minute periods`
    : `${datapointsToAlarm} of ${evaluationPeriods} ${periodS / 60}-minute periods`;
}
