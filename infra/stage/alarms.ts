// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${...} here are CloudFormation Fn::Sub placeholders
// The alarms generated from the stage's endpoints and the code's own metrics.

import type { Resource, Resources } from './cfn';
import type { Stage } from './load';
import { notifications } from './notifications';
import { outageRule } from './outage';

type StageEndpoint = Stage['endpoints'][number];
/** A metric dimension beyond `service`. */
type Dimension = { Name: string; Value: string };

/** An endpoint failing more than failureRatePct of its deliveries in busy minutes. */
export function endpointAlarm(stage: Stage, endpoint: StageEndpoint): Resource {
  const dimension = [{ Name: 'endpoint', Value: endpoint.name }];
  const metric = (id: string, metricName: string) => customMetric(stage, id, metricName, 60, dimension);
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmName: `${stage.service}-${stage.stage}-endpoint-${endpoint.name}-failure-rate`,
      AlarmDescription:
        `More than ${stage.failureRatePct}% of deliveries to endpoint '${endpoint.name}' failed (after retries) in 3 ` +
        `of the last 5 minutes, counting only minutes with at least ${stage.failureMinDeliveries} deliveries (only events routed to it count). ` +
        'Failures are 5xx, 408/429, timeouts, resets, 401/403 (our credentials refused even after a refresh: check ' +
        'ENDPOINT_CREDENTIALS or the endpoints file) and other 4xx such as 404/405/409/410 (the endpoint, not the event); 400/413/415/422 ' +
        'blame the event and are quarantined. ' +
        'Run the "Delivery failures by endpoint and status" query; docs/operations.md, Alarms and what to do, says what to do.',
      Metrics: [
        metric('ok', stage.metric.DeliverySucceeded),
        metric('ko', stage.metric.DeliveryFailed),
        // A minute with no successes has no DeliverySucceeded point: fill with 0, or an outage would never alarm.
        {
          Id: 'rate',
          Label: `${endpoint.name} failure rate (%)`,
          ReturnData: true,
          Expression: `IF((FILL(ok, 0) + FILL(ko, 0)) >= ${stage.failureMinDeliveries}, 100 * FILL(ko, 0) / (FILL(ok, 0) + FILL(ko, 0)), 0)`,
        },
      ],
      Threshold: stage.failureRatePct,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 5,
      DatapointsToAlarm: 3,
      TreatMissingData: 'notBreaching',
      ...notifications(stage),
    },
  };
}

/** A Sum of one of the code's metrics, as an input of an alarm's expression. */
function customMetric(stage: Stage, id: string, metricName: string, period: number, dimensions: Dimension[] = []) {
  return {
    Id: id,
    ReturnData: false,
    MetricStat: {
      Metric: {
        Namespace: stage.namespace,
        MetricName: metricName,
        Dimensions: [{ Name: 'service', Value: stage.serviceDimension }, ...dimensions],
      },
      Period: period,
      Stat: 'Sum',
    },
  };
}

/** An endpoint refusing everything alarms whatever its traffic: failures and no success in two redelivery periods. */
export function endpointDownAlarm(stage: Stage, endpoint: StageEndpoint): Resource {
  const outage = stage.outageAlarm;
  const period = outage.periodS;
  const dimension = [{ Name: 'endpoint', Value: endpoint.name }];
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmName: `${stage.service}-${stage.stage}-endpoint-${endpoint.name}-down`,
      AlarmDescription:
        `Every delivery to endpoint '${endpoint.name}' failed, none succeeded, in ${outageRule(outage)} ` +
        '(whatever the traffic: a failing record fails in at least two of them). Its records wait in ' +
        'backoff and reach the DLQ after maxReceiveCount receives. Run the "Delivery failures by endpoint and status" query.',
      Metrics: [
        customMetric(stage, 'ok', stage.metric.DeliverySucceeded, period, dimension),
        customMetric(stage, 'ko', stage.metric.DeliveryFailed, period, dimension),
        {
          Id: 'down',
          Label: `${endpoint.name} failing with no success`,
          ReturnData: true,
          Expression: 'IF(FILL(ko, 0) > 0 AND FILL(ok, 0) == 0, 1, 0)',
        },
      ],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: outage.evaluationPeriods,
      DatapointsToAlarm: outage.datapointsToAlarm,
      TreatMissingData: 'notBreaching',
      ...notifications(stage),
    },
  };
}

/** Failed receives a period needs to count for records-failing unless every record received failed. */
export const RECORDS_FAILING_MIN = 5;

/**
 * Stages without lanes: the share of received records that failed (went back to the queue), above recordsFailingPct
 * in the still-failing periods. A share, not a count: a busy healthy stage always has a few transient failures, and
 * any count above 0 sat in ALARM all day there; an endpoint that most records reach failing for good fails them all.
 * A low-volume stage's period counts only with RECORDS_FAILING_MIN failures or with every record failing (a record
 * alone failing until the DLQ). With lanes, an endpoint's backlog-age alarm and the DLQ alarms say it instead.
 */
export function recordsFailingAlarm(stage: Stage): Resource {
  const outage = stage.outageAlarm;
  const pct = stage.recordsFailingPct;
  return {
    Type: 'AWS::CloudWatch::Alarm',
    Properties: {
      AlarmName: `${stage.service}-${stage.stage}-records-failing`,
      AlarmDescription:
        `More than ${pct}% of the records received failed (went back to the queue for another attempt), and at ` +
        `least ${RECORDS_FAILING_MIN} or all of them, in ${outageRule(outage)}: an endpoint that most records reach ` +
        'is down or refusing, or the deadline cuts deliveries off. SQS hides records in backoff from the queue-age metric; an endpoint down that few records ' +
        'reach raises its endpoint-down alarm. Check the dashboard, then the "Delivery failures by endpoint and ' +
        'status" query.',
      Metrics: [
        customMetric(stage, 'failed', stage.metric.RecordsFailed, outage.periodS),
        customMetric(stage, 'received', stage.metric.RecordsReceived, outage.periodS),
        {
          Id: 'share',
          Label: 'records failing (% of received)',
          ReturnData: true,
          // At low volume one failure is already a large share: a period counts with a few failures or all failing.
          Expression:
            `IF(FILL(received, 0) > 0 AND (FILL(failed, 0) >= ${RECORDS_FAILING_MIN} OR ` +
            'FILL(failed, 0) == FILL(received, 0)), 100 * FILL(failed, 0) / FILL(received, 0), 0)',
        },
      ],
      Threshold: pct,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: outage.evaluationPeriods,
      // A failing record fails in every period until the DLQ (outageAlarmEvaluation): it must persist.
      DatapointsToAlarm: outage.datapointsToAlarm,
      TreatMissingData: 'notBreaching',
      ...notifications(stage),
    },
  };
}

/** Alarms on the side-effect errors the code counts (not per endpoint): id → [metric, name suffix, description]. */
export function batchAlarms(stage: Stage, errorPeriods: number): Resources {
  const m = stage.metric;
  const specs: Record<string, [string, string, string]> = {
    QuarantineErrorsAlarm: [
      m.QuarantineErrors,
      'quarantine-errors',
      'Poison records could not be sent to the DLQ (SQS error or AccessDenied): they stay on the source queue and ' +
        'come back until maxReceiveCount. The log line "quarantine failed" has the error.',
    ],
    BackoffErrorsAlarm: [
      m.BackoffErrors,
      'backoff-errors',
      'Failed records could not be delayed (ChangeMessageVisibility failed): they come back after the full ' +
        'visibility timeout instead. The log line "visibility backoff failed" has the error.',
    ],
    LedgerErrorsAlarm: [
      m.LedgerErrors,
      'ledger-errors',
      'The delivery ledger could not be read or written (DynamoDB error or AccessDenied): redeliveries reach ' +
        'endpoints that already accepted the event. The log lines "delivery ledger ..." have the error.',
    ],
  };
  const alarms: Resources = {};
  for (const [id, [metricName, suffix, description]] of Object.entries(specs)) {
    alarms[id] = {
      Type: 'AWS::CloudWatch::Alarm',
      Properties: {
        AlarmName: `${stage.service}-${stage.stage}-${suffix}`,
        AlarmDescription: description,
        Namespace: stage.namespace,
        MetricName: metricName,
        Dimensions: [{ Name: 'service', Value: stage.serviceDimension }],
        Statistic: 'Sum',
        Period: 60,
        EvaluationPeriods: errorPeriods,
        // One failing batch is enough.
        DatapointsToAlarm: 1,
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
        ...notifications(stage),
      },
    };
  }
  return alarms;
}
