import { backoffDelayS } from '../../lib/settle/backoff';

// CloudWatch alarm evaluation over simulated data points, to check that an alarm of the template fires in a failure
// scenario (and that a deliberately weaker one does not). Follows CloudWatch's documented rules: M of N periods,
// missing data treated per TreatMissingData (only notBreaching is used by the stack).

export interface AlarmSettings {
  Period: number;
  EvaluationPeriods: number;
  DatapointsToAlarm?: number;
  Threshold: number;
  ComparisonOperator: string;
  TreatMissingData?: string;
}

const COMPARE: Record<string, (value: number, threshold: number) => boolean> = {
  GreaterThanThreshold: (v, t) => v > t,
  GreaterThanOrEqualToThreshold: (v, t) => v >= t,
  LessThanThreshold: (v, t) => v < t,
  LessThanOrEqualToThreshold: (v, t) => v <= t,
};

/** The end (seconds) of the first period after which the alarm is in ALARM, or undefined if it never is. */
export function firstAlarmAt(alarm: AlarmSettings, values: (number | undefined)[]): number | undefined {
  if (alarm.TreatMissingData !== 'notBreaching') throw new Error('only TreatMissingData notBreaching is simulated');
  const compare = COMPARE[alarm.ComparisonOperator]!;
  const breaching = values.map((v) => v !== undefined && compare(v, alarm.Threshold));
  const needed = alarm.DatapointsToAlarm ?? alarm.EvaluationPeriods;
  for (let end = 1; end <= breaching.length; end++) {
    const window = breaching.slice(Math.max(0, end - alarm.EvaluationPeriods), end);
    if (window.filter(Boolean).length >= needed) return end * alarm.Period;
  }
  return undefined;
}

/** The ends (seconds) of the periods where the alarm goes from OK to ALARM: each is one notification. */
export function alarmTransitions(alarm: AlarmSettings, values: (number | undefined)[]): number[] {
  const transitions: number[] = [];
  let inAlarm = false;
  for (let end = 1; end <= values.length; end++) {
    const now = firstAlarmAt(alarm, values.slice(Math.max(0, end - alarm.EvaluationPeriods), end)) !== undefined;
    if (now && !inAlarm) transitions.push(end * alarm.Period);
    inAlarm = now;
  }
  return transitions;
}

/** The per-period Sum of events at the given times (seconds), undefined where a period has none. */
export function sums(times: number[], period: number, horizon: number): (number | undefined)[] {
  const values: (number | undefined)[] = Array.from({ length: Math.ceil(horizon / period) }, () => undefined);
  for (const t of times) {
    const i = Math.floor(t / period);
    if (i < values.length) values[i] = (values[i] ?? 0) + 1;
  }
  return values;
}

/** A metric-math expression of the stack (IF, FILL, AND, comparisons, arithmetic) as a function of its metrics. */
export function mathExpression(expression: string, ids: string[]): (...values: (number | undefined)[]) => number {
  const js = expression.replace(/\bAND\b/g, '&&').replace(/\bOR\b/g, '||');
  if (/[^\w\s.,()+\-*/<>=!&|]/.test(js)) throw new Error(`unexpected syntax in ${expression}`);
  const fn = new Function('IF', 'FILL', ...ids, `return ${js};`) as (...args: unknown[]) => number | boolean;
  const IF = (condition: unknown, yes: number, no: number) => (condition ? yes : no);
  const FILL = (value: number | undefined, fill: number) => value ?? fill;
  return (...values) => Number(fn(IF, FILL, ...values));
}

/**
 * When one record is delivered and fails, receive after receive, until SQS dead-letters it: each failure delays it by
 * the code's backoff (`random` picks the jitter), then it waits up to `pickupS` to be received and processed again.
 */
export function failureTimes(options: {
  startS: number;
  maxReceiveCount: number;
  policy: { baseDelayS: number; maxDelayS: number };
  random: () => number;
  pickupS: number;
  /** The endpoint's Retry-After (s) at each failed receive, if it sends one. */
  retryAfterS?: (receive: number) => number | undefined;
}): number[] {
  const times: number[] = [];
  let t = options.startS;
  for (let receive = 1; receive <= options.maxReceiveCount; receive++) {
    times.push(t);
    const delay = backoffDelayS(receive, options.policy, options.retryAfterS?.(receive), options.random);
    t += delay + options.random() * options.pickupS;
  }
  return times;
}

/**
 * A metric-math expression over whole series (one value per period, undefined where a metric has no point): each
 * DIFF(inner) is computed on its inner expression's series (no value at the first point or next to a missing one,
 * as CloudWatch's DIFF), then the rest period by period.
 */
export function seriesExpression(
  expression: string,
  series: Record<string, (number | undefined)[]>,
): (number | undefined)[] {
  const all: Record<string, (number | undefined)[]> = { ...series };
  const length = Math.max(...Object.values(series).map((s) => s.length));
  const pointwise = (text: string) => {
    const ids = Object.keys(all);
    const fn = mathExpression(text, ids);
    return Array.from({ length }, (_, i) => {
      const value = fn(...ids.map((id) => all[id]![i]));
      return Number.isNaN(value) ? undefined : value;
    });
  };
  let diffs = 0;
  // One level of nesting inside DIFF (e.g. DIFF(FILL(visible, 0))) is all the stack uses.
  const text = expression.replace(/DIFF\(((?:[^()]|\([^()]*\))*)\)/g, (_, inner: string) => {
    const values = pointwise(inner);
    const id = `diff${diffs++}`;
    all[id] = values.map((v, i) =>
      i === 0 || v === undefined || values[i - 1] === undefined ? undefined : v - values[i - 1]!,
    );
    return id;
  });
  return pointwise(text);
}

/** The per-period Maximum of values written at the given times (seconds), undefined where a period has none. */
export function maxima(points: [number, number][], period: number, horizon: number): (number | undefined)[] {
  const values: (number | undefined)[] = Array.from({ length: Math.ceil(horizon / period) }, () => undefined);
  for (const [t, value] of points) {
    const i = Math.floor(t / period);
    if (i < values.length) values[i] = Math.max(values[i] ?? Number.NEGATIVE_INFINITY, value);
  }
  return values;
}

/**
 * When a lane invocation sees an event parked for an endpoint down until `recoversAtS`, and the age it writes
 * (LaneBacklogAgeS, s since the first failure): attempts per the retry schedule, hops of at most `hopS` between
 * them, each answered up to `pickupS` late. Ends with the attempt that delivers it, or when the schedule runs out.
 */
export function laneAgePoints(options: {
  firstFailureS: number;
  parkAfterS: number;
  schedule: readonly number[];
  recoversAtS: number;
  hopS: number;
  pickupS: (hop: number) => number;
}): [number, number][] {
  const points: [number, number][] = [];
  const { firstFailureS: f } = options;
  let t = f + options.parkAfterS;
  let hops = 0;
  for (const delay of options.schedule) {
    const due = t + delay;
    while (t + options.hopS < due) {
      t += options.hopS + options.pickupS(hops++);
      points.push([t, t - f]);
    }
    t = Math.max(t, due) + options.pickupS(hops++);
    points.push([t, t - f]);
    if (t >= options.recoversAtS) break;
  }
  return points;
}
