// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// The stage's CloudWatch dashboard.

import { checkGraphMetrics } from './limits';
import type { Stage } from './load';

/**
 * Metrics the code emits that the dashboard leaves out on purpose, with why; every other emitted metric must be on
 * it (test/integration/telemetry.test.ts checks both against a real run).
 */
export const UNDISPLAYED_METRICS: Record<string, string> = {
  // Powertools' cold-start count (dimensions service + function_name): the duration widget's max shows cold starts.
  ColdStart: 'cold starts show as the maximum of the function duration',
};

/** CloudWatch rejects an alarm widget of more than 100 alarms (4 per endpoint with lanes): one widget per 100. */
export const ALARMS_PER_WIDGET = 100;

/** A widget listing alarms by their ARNs. */
interface AlarmWidget extends Widget {
  type: 'alarm';
  properties: { title: string; alarms: string[] };
}

/** The first block sits in the grid; further blocks go full width below the last row (y 32). */
export function alarmWidgets(alarmIds: string[]): AlarmWidget[] {
  const blocks: string[][] = [];
  for (let i = 0; i < alarmIds.length; i += ALARMS_PER_WIDGET) blocks.push(alarmIds.slice(i, i + ALARMS_PER_WIDGET));
  return blocks.map((ids, k) => ({
    type: 'alarm' as const,
    ...(k === 0 ? { x: 16, y: 14, width: 8, height: 6 } : { x: 0, y: 26 + 6 * k, width: 24, height: 6 }),
    properties: {
      title: blocks.length === 1 ? 'Alarms' : `Alarms (${k + 1} of ${blocks.length})`,
      alarms: ids.map((id) => `\${${id}.Arn}`),
    },
  }));
}

/** A CloudWatch metric line: namespace, name, dimension names and values, then its options; or an expression. */
type MetricLine = (string | Options)[];
type Options = Record<string, unknown>;
/** One widget of the dashboard body. */
export interface Widget {
  type: string;
  x: number;
  y: number;
  width: number;
  height: number;
  properties: Record<string, unknown>;
}

const REGION = '${AWS::Region}';

/** The graph builder and the metric lines every graph of the stage's dashboard is drawn with. */
function painter(stage: Stage) {
  const ns = stage.namespace;
  const svc = ['service', stage.serviceDimension];
  const graph = (
    title: string,
    x: number,
    y: number,
    w: number,
    h: number,
    metrics: MetricLine[],
    extra: Options = {},
  ): Widget => {
    checkGraphMetrics(stage.stage, title, metrics.length, stage.endpoints.length);
    return {
      type: 'metric',
      x,
      y,
      width: w,
      height: h,
      properties: { title, region: REGION, view: 'timeSeries', period: 60, stat: 'Sum', metrics, ...extra },
    };
  };
  return {
    m: stage.metric,
    graph,
    lambda: (name: string, options: Options): MetricLine => [
      'AWS/Lambda',
      name,
      'FunctionName',
      '${IngestLambdaFunction}',
      options,
    ],
    queue: (name: string, queueName: string, options: Options): MetricLine => [
      'AWS/SQS',
      name,
      'QueueName',
      queueName,
      options,
    ],
    perEndpoint: (name: string, endpoint: string, options: Options): MetricLine => [
      ns,
      name,
      ...svc,
      'endpoint',
      endpoint,
      options,
    ],
    batch: (name: string, options: Options): MetricLine => [ns, name, ...svc, options],
  };
}
type Painter = ReturnType<typeof painter>;

/** The title: the stage, its queues and function, and where to read what each alarm means. */
function headerWidget(stage: Stage): Widget {
  return {
    type: 'text',
    x: 0,
    y: 0,
    width: 24,
    height: 2,
    properties: {
      markdown:
        `## ${stage.service} · ${stage.stage}\n` +
        'Source queue `${IngestQueue.QueueName}`, dead-letter queue `${IngestDeadLetterQueue.QueueName}`, ' +
        'function `${IngestLambdaFunction}`. Saved Logs Insights queries: folder ' +
        `\`${stage.service}-${stage.stage}\`. What each alarm means and what to do: docs/operations.md, Alarms and what to do.`,
    },
  };
}

/** Success rate, latency and deliveries, one line per endpoint. */
function endpointGraphs(stage: Stage, { m, graph, perEndpoint }: Painter): Widget[] {
  return [
    graph(
      'Delivery success rate per endpoint (%)',
      0,
      2,
      12,
      6,
      stage.endpoints.flatMap((e, i) => [
        [{ expression: `100 * FILL(s${i}, 0) / (FILL(s${i}, 0) + FILL(f${i}, 0))`, label: e.name, id: `rate${i}` }],
        perEndpoint(m.DeliverySucceeded, e.name, { id: `s${i}`, visible: false }),
        perEndpoint(m.DeliveryFailed, e.name, { id: `f${i}`, visible: false }),
      ]),
      {
        yAxis: { left: { min: 0, max: 100, showUnits: false } },
        annotations: { horizontal: [{ label: 'alarm', value: 100 - stage.failureRatePct }] },
      },
    ),
    graph(
      'Delivery latency per endpoint (ms, p50 and p99)',
      12,
      2,
      12,
      6,
      stage.endpoints.flatMap((e) => [
        perEndpoint(m.DeliveryLatency, e.name, { stat: 'p50', label: `${e.name} p50` }),
        perEndpoint(m.DeliveryLatency, e.name, { stat: 'p99', label: `${e.name} p99` }),
      ]),
    ),
    graph(
      'Deliveries per endpoint (per minute)',
      0,
      8,
      12,
      6,
      stage.endpoints.flatMap((e) => [
        perEndpoint(m.DeliverySucceeded, e.name, { label: `${e.name} succeeded` }),
        perEndpoint(m.DeliveryFailed, e.name, { label: `${e.name} failed` }),
        perEndpoint(m.DeliveryRetries, e.name, { label: `${e.name} retries` }),
        perEndpoint(m.DeliverySkipped, e.name, { label: `${e.name} skipped (already delivered)` }),
      ]),
    ),
  ];
}

/** The records' fate, the source queue and the DLQ. */
function queueGraphs({ m, graph, queue, batch }: Painter): Widget[] {
  return [
    graph('Records: acknowledged vs failed (per minute)', 12, 8, 12, 6, [
      batch(m.RecordsReceived, { label: 'received' }),
      batch(m.RecordsAcknowledged, { label: 'acknowledged' }),
      batch(m.RecordsFailed, { label: 'failed (back to the queue)' }),
      batch(m.RecordsInvalid, { label: 'invalid' }),
      batch(m.RecordsQuarantined, { label: 'quarantined' }),
      batch(m.RecordsRouted, { label: 'routed (to at least one endpoint)' }),
      batch(m.RecordsUnrouted, { label: 'unrouted (matched no filter; acknowledged)' }),
    ]),
    graph('Source queue: depth and age of oldest', 0, 14, 8, 6, [
      queue('ApproximateNumberOfMessagesVisible', '${IngestQueue.QueueName}', { stat: 'Maximum', label: 'waiting' }),
      queue('ApproximateNumberOfMessagesNotVisible', '${IngestQueue.QueueName}', {
        stat: 'Maximum',
        label: 'in flight or in backoff',
      }),
      queue('ApproximateAgeOfOldestMessage', '${IngestQueue.QueueName}', {
        stat: 'Maximum',
        label: 'oldest (s)',
        yAxis: 'right',
      }),
    ]),
    graph('Dead-letter queue depth', 8, 14, 8, 6, [
      queue('ApproximateNumberOfMessagesVisible', '${IngestDeadLetterQueue.QueueName}', {
        stat: 'Maximum',
        label: 'messages',
      }),
    ]),
  ];
}

/** The function: duration, concurrency, deadline aborts and side-effect errors. */
function functionGraphs({ m, graph, lambda, batch }: Painter): Widget[] {
  return [
    graph('Function duration (ms)', 0, 20, 8, 6, [
      lambda('Duration', { stat: 'Average', label: 'average' }),
      lambda('Duration', { stat: 'p99', label: 'p99' }),
      lambda('Duration', { stat: 'Maximum', label: 'max' }),
      batch(m.BatchDuration, { stat: 'p99', label: 'batch p99 (own measure)' }),
    ]),
    graph('Concurrency and invocations', 8, 20, 8, 6, [
      lambda('ConcurrentExecutions', { stat: 'Maximum', label: 'concurrent executions' }),
      lambda('Invocations', { label: 'invocations', yAxis: 'right' }),
      lambda('Errors', { label: 'errors', yAxis: 'right' }),
      lambda('Throttles', { label: 'throttles', yAxis: 'right' }),
    ]),
    graph('Deadline aborts and side-effect errors', 16, 20, 8, 6, [
      batch(m.DeadlineAborts, { label: 'deadline aborts' }),
      batch(m.QuarantineErrors, { label: 'quarantine errors' }),
      batch(m.BackoffErrors, { label: 'backoff errors' }),
      batch(m.LedgerErrors, { label: 'ledger errors' }),
    ]),
  ];
}

/** The latest failure lines of the function's log group. */
function failuresLogWidget(): Widget {
  return {
    type: 'log',
    x: 0,
    y: 26,
    width: 24,
    height: 6,
    properties: {
      title: 'Latest delivery failures',
      region: REGION,
      view: 'table',
      query:
        "SOURCE '${IngestLogGroup}' | filter message in ['delivery failed', 'deliveries cut off by the deadline', " +
        '"deliveries not attempted: the endpoint\'s circuit breaker is open", ' +
        "'deliveries not attempted: the endpoint is paused and its lane could not take them'] " +
        '| fields @timestamp, endpoint, kind, status, error, attempts, records, eventId, messageId ' +
        '| sort @timestamp desc | limit 50',
    },
  };
}

/** The dashboard's body: the stage's alarms listed as given, the graphs in their grid. */
export function dashboardBody(stage: Stage, alarmIds: string[]): string {
  const paint = painter(stage);
  const alarms = ['DeadLetterQueueAlarm', 'QueueAgeAlarm', 'FunctionErrorsAlarm', ...alarmIds];
  const widgets = [
    headerWidget(stage),
    ...endpointGraphs(stage, paint),
    ...queueGraphs(paint),
    ...alarmWidgets(alarms),
    ...functionGraphs(paint),
    ...laneWidgets(stage, paint, 32 + 6 * (alarmWidgets(alarms).length - 1)),
    failuresLogWidget(),
  ];
  return JSON.stringify({ widgets });
}

/** EMF LaneBacklogAgeS (lib/lanes, per endpoint): the age of the oldest parked event a lane batch saw. */
export const LANE_BACKLOG_AGE_METRIC = (stage: Stage): string => stage.metric.LaneBacklogAgeS;

/**
 * Stages with lanes: each endpoint's lane backlog (waiting, delayed, in flight), its oldest parked event, and what
 * went in and out of its lane (parked, delivered from it, dead-lettered once its schedule was exhausted).
 */
function laneWidgets(stage: Stage, { m, graph, perEndpoint }: Painter, y: number): Widget[] {
  if (!stage.lanes) return [];
  const queue = (name: string, e: Stage['endpoints'][number], id: string): MetricLine => [
    'AWS/SQS',
    name,
    'QueueName',
    `\${IngestLane${e.id}.QueueName}`,
    { id, stat: 'Maximum', visible: false },
  ];
  return [
    graph(
      'Lane backlog per endpoint (messages: waiting + delayed + in flight)',
      0,
      y,
      12,
      6,
      stage.endpoints.flatMap((e, i) => [
        [{ expression: `FILL(v${i}, 0) + FILL(d${i}, 0) + FILL(n${i}, 0)`, label: e.name, id: `lane${i}` }],
        queue('ApproximateNumberOfMessagesVisible', e, `v${i}`),
        queue('ApproximateNumberOfMessagesDelayed', e, `d${i}`),
        queue('ApproximateNumberOfMessagesNotVisible', e, `n${i}`),
      ]),
    ),
    graph(
      'Oldest parked event per endpoint (s since its first failure)',
      12,
      y,
      12,
      6,
      stage.endpoints.map((e) => [
        stage.namespace,
        LANE_BACKLOG_AGE_METRIC(stage),
        'service',
        stage.serviceDimension,
        'endpoint',
        e.name,
        { stat: 'Maximum', label: e.name },
      ]),
      { annotations: { horizontal: [{ label: 'alarm', value: stage.laneBacklogAgeAlarmS }] } },
    ),
    graph(
      'Lanes per endpoint (events per minute: parked, delivered from the lane, retries exhausted)',
      0,
      y + 6,
      24,
      6,
      stage.endpoints.flatMap((e) => [
        perEndpoint(m.EventsParked, e.name, { label: `${e.name} parked` }),
        perEndpoint(m.LaneDelivered, e.name, { label: `${e.name} delivered from the lane` }),
        perEndpoint(m.RetriesExhausted, e.name, { label: `${e.name} retries exhausted (to the DLQ)` }),
      ]),
    ),
  ];
}
