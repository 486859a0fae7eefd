import { beforeAll, describe, expect, it } from 'vitest';
import { UNDISPLAYED_METRICS } from '../../infra/stage/index';
import { runStage, type StageRun } from '../support/local-stage';
import { type Json, mutate, packageTemplate, type Template, VARIANTS } from '../support/package-stack';
import {
  checkMetrics,
  checkQueries,
  type EmittedMetric,
  emittedMetrics,
  eventHistoryMatches,
  queryFields,
} from '../support/telemetry-check';

// The alarms, dashboard and saved Logs Insights queries of the packaged stage against the EMF metrics and JSON log
// lines the function writes in a real local run (delivery, failure with backoff, quarantine, ledger skip, deadline).
let template: Template;
let run: StageRun;
let emitted: EmittedMetric[];
const undisplayed = Object.keys(UNDISPLAYED_METRICS);

beforeAll(async () => {
  // With lanes (a standard stage's default): the run parks, serves a lane, exhausts a record and re-delays a paused one.
  template = await packageTemplate(VARIANTS.secured);
  // At the default stage's INFO level: a field only DEBUG lines carry would be missing in production.
  run = await runStage(template, { POWERTOOLS_METRICS_DISABLED: 'false', POWERTOOLS_LOG_LEVEL: 'INFO' });
  emitted = emittedMetrics(run.lines);
}, 120_000);

const props = (t: Template, id: string) => t.Resources[id]!.Properties! as Record<string, unknown>;
const dashboardBody = (t: Template) => props(t, 'IngestDashboard').DashboardBody as { 'Fn::Sub': string };

describe('metrics: alarms and dashboard against the EMF the code writes', () => {
  it('emits its metrics under the stage namespace and service, per endpoint where it says so', () => {
    const summary = Object.fromEntries(
      emitted.map((m) => [`${m.name}{${Object.keys(m.dimensions).sort().join(',')}}`, m.unit]),
    );
    expect(summary).toMatchObject({
      'RecordsFailed{service}': 'Count',
      'QuarantineErrors{service}': 'Count',
      'BatchDuration{service}': 'Milliseconds',
      'DeliveryFailed{endpoint,service}': 'Count',
      'DeliveryLatency{endpoint,service}': 'Milliseconds',
      'ColdStart{function_name,service}': 'Count',
      'EventsParked{endpoint,service}': 'Count',
      'LaneDelivered{endpoint,service}': 'Count',
      'RetriesExhausted{endpoint,service}': 'Count',
      'LaneBacklogAgeS{endpoint,service}': 'Seconds',
    });
    // Each lane action of the run counted for its endpoint: both parked, audit's lane delivered one and exhausted one.
    const total = (name: string, endpoint: string) =>
      run.lines
        .filter((line) => '_aws' in line && line.endpoint === endpoint && typeof line[name] === 'number')
        .reduce((sum, line) => sum + (line[name] as number), 0);
    expect(['analytics', 'audit'].map((e) => total('EventsParked', e))).toEqual([2, 2]);
    expect([total('LaneDelivered', 'audit'), total('RetriesExhausted', 'audit')]).toEqual([1, 1]);
    for (const metric of emitted) {
      expect(metric.namespace).toBe('IngestFanout');
      expect(metric.dimensions.service).toBe('ingest-fanout-dev');
    }
  });

  it('alarms and draws only metrics the code emits with exactly those dimensions, and draws all others', () => {
    expect(checkMetrics(template, emitted, undisplayed)).toEqual([]);
    // The undisplayed list names only metrics the code emits.
    for (const name of undisplayed) expect(emitted.map((m) => m.name)).toContain(name);
  });

  it('reports a misspelt metric, a wrong dimension set, a dangling expression id and an undrawn metric', () => {
    const broken = mutate(template, (t) => {
      props(t, 'LaneBacklogAgeAlarmAudit').MetricName = 'LaneBacklogAge';
      (props(t, 'LedgerErrorsAlarm').Dimensions as Json[]).push({ Name: 'endpoint', Value: 'audit' });
      const down = props(t, 'EndpointDownAlarmAudit').Metrics as Json[];
      down.find((m) => m.Expression)!.Expression = 'IF(FILL(ko, 0) > 0 AND FILL(okk, 0) == 0, 1, 0)';
      const body = dashboardBody(t);
      body['Fn::Sub'] = body['Fn::Sub'].replace(/,\["IngestFanout","BatchDuration"[^\]]*\]/, '');
    });
    expect(checkMetrics(broken, emitted, undisplayed)).toEqual([
      "alarm EndpointDownAlarmAudit: expression down uses 'okk', which is no metric of the alarm",
      'alarm LedgerErrorsAlarm: IngestFanout/LedgerErrors{endpoint=audit,service=ingest-fanout-dev} is never emitted (emitted: IngestFanout/LedgerErrors{service=ingest-fanout-dev})',
      'alarm LaneBacklogAgeAlarmAudit: IngestFanout/LaneBacklogAge{endpoint=audit,service=ingest-fanout-dev} is never emitted (no metric of that name)',
      'IngestFanout/BatchDuration{service=ingest-fanout-dev} is emitted but on no dashboard widget, nor listed as undisplayed',
    ]);
  });

  it('checks a stage without lanes (FIFO, or lanes: false) against the same run, lanes metrics aside', async () => {
    const noLanes = await packageTemplate([...VARIANTS.secured, '--param=lanes=false']);
    const laneMetrics = ['EventsParked', 'LaneDelivered', 'RetriesExhausted', 'LaneBacklogAgeS'];
    const sourcePath = emitted.filter((m) => !laneMetrics.includes(m.name));
    expect(noLanes.Resources).toHaveProperty('RecordsFailingAlarm');
    expect(checkMetrics(noLanes, sourcePath, undisplayed)).toEqual([]);
    const broken = mutate(noLanes, (t) => {
      const failing = props(t, 'RecordsFailingAlarm').Metrics as { MetricStat?: { Metric: Json } }[];
      failing.find((m) => m.MetricStat)!.MetricStat!.Metric.MetricName = 'RecordFailed';
    });
    expect(checkMetrics(broken, sourcePath, undisplayed)).toEqual([
      'alarm RecordsFailingAlarm (failed): IngestFanout/RecordFailed{service=ingest-fanout-dev} is never emitted (no metric of that name)',
    ]);
  }, 120_000);

  it('rejects an AWS metric the service does not publish under that dimension', () => {
    const broken = mutate(template, (t) => {
      props(t, 'QueueAgeAlarm').MetricName = 'AgeOfOldestMessage';
    });
    expect(checkMetrics(broken, emitted, undisplayed)).toEqual([
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub variable, not a JS template
      'alarm QueueAgeAlarm: AWS/SQS/AgeOfOldestMessage{QueueName=${IngestQueue.QueueName}} is not an AWS/SQS metric with dimension QueueName',
    ]);
  });
});

describe('saved Logs Insights queries against the log lines', () => {
  it('reads the fields each query filters, displays and aggregates', () => {
    const query = String(props(template, 'QueryFailuresByEndpoint').QueryString);
    expect(queryFields(query).sort()).toEqual(['endpoint', 'error', 'eventId', 'kind', 'message', 'records', 'status']);
    expect(queryFields(String(props(template, 'QueryEventHistory').QueryString))).toContain('messageIds');
  });

  it('every failure line reaches the failure query, the event history and the dashboard (review finding 4)', () => {
    const failureMessages = [
      'delivery failed',
      'deliveries cut off by the deadline',
      "deliveries not attempted: the endpoint's circuit breaker is open",
      'deliveries not attempted: the endpoint is paused and its lane could not take them',
    ];
    const widget = JSON.parse(dashboardBody(template)['Fn::Sub']).widgets.find(
      (w: { type: string }) => w.type === 'log',
    ) as { properties: { query: string } };
    const failures = String(props(template, 'QueryFailuresByEndpoint').QueryString);
    const history = String(props(template, 'QueryEventHistory').QueryString);
    for (const message of failureMessages) {
      expect(failures).toContain(message);
      expect(widget.properties.query).toContain(message);
    }
    // The grouped lines are the only ones with messageIds: the history finds them by any of their message ids.
    expect(history).toContain("messageIds like 'EVENT_OR_MESSAGE_ID'");
  });

  it('shows in the event history an event parked, delivered from its lane, exhausted, and waiting while paused', () => {
    const history = (id: string) =>
      run.lines
        .filter((line) => !('_aws' in line) && eventHistoryMatches(line, id))
        .map((line) => `${line.endpoint} ${line.message}${line.reason ? ` (${line.reason})` : ''}`)
        .sort();
    // Analytics is paused: parked at once, its lane sends the event back to wait. Audit fails, then its lane serves.
    const parkedAndWaiting = [
      'analytics events parked in the endpoint lane',
      'analytics lane batch processed',
      'audit events parked in the endpoint lane',
    ];
    expect(history('lane-delivered')).toEqual([...parkedAndWaiting, 'audit lane batch processed'].sort());
    expect(history('lane-exhausted')).toEqual(
      [...parkedAndWaiting, 'audit lane record to the quarantine (retries-exhausted)'].sort(),
    );
  });

  it('uses only fields the function’s JSON log lines have', () => {
    expect(run.lines.some((line) => line.message === 'deliveries cut off by the deadline')).toBe(true);
    expect(checkQueries(template, run.lines)).toEqual([]);
  });

  it('reports a field no log line has, naming the query', () => {
    const broken = mutate(template, (t) => {
      const q = props(t, 'QueryQuarantinedByReason');
      q.QueryString = String(q.QueryString).replace('by reason', 'by quarantineReason');
    });
    expect(checkQueries(broken, run.lines)).toEqual([
      "query QueryQuarantinedByReason: field 'quarantineReason' is in no log line its filter selects",
    ]);
  });

  it('reads only the lines a query filters on, and array fields as Logs Insights flattens them', () => {
    const broken = mutate(template, (t) => {
      const q = props(t, 'QueryFailuresByEndpoint');
      // `reason` exists, but only on quarantine lines: on 'delivery failed' lines the column is empty.
      q.QueryString = String(q.QueryString).replace('by endpoint', 'by reason, endpoint');
    });
    expect(checkQueries(broken, run.lines)).toEqual([
      "query QueryFailuresByEndpoint: field 'reason' is in no log line its filter selects",
    ]);
    // messageIds written as an array would be messageIds.0, messageIds.1, ... and the event history column empty.
    const arrays = run.lines.map((line) =>
      typeof line.messageIds === 'string' ? { ...line, messageIds: line.messageIds.split(',') } : line,
    );
    expect(checkQueries(template, arrays)).toEqual([
      "query QueryEventHistory: field 'messageIds' is in no log line the function writes",
    ]);
  });
});
