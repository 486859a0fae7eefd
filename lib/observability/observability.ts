import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import type { MiddlewareObj } from '@middy/core';
import type { Context } from 'aws-lambda';
import type { RequestObserver } from '../delivery';

export const SERVICE_NAME = 'ingest-fanout';
export const METRICS_NAMESPACE = 'IngestFanout';

/** Metric names: the dashboard, the alarms and the README use these. */
export const MetricName = {
  DeliverySucceeded: 'DeliverySucceeded',
  DeliveryFailed: 'DeliveryFailed',
  DeliveryRetries: 'DeliveryRetries',
  DeliverySkipped: 'DeliverySkipped',
  DeliveryLatency: 'DeliveryLatency',
  RecordsReceived: 'RecordsReceived',
  RecordsAcknowledged: 'RecordsAcknowledged',
  RecordsFailed: 'RecordsFailed',
  RecordsInvalid: 'RecordsInvalid',
  RecordsQuarantined: 'RecordsQuarantined',
  /** Records routed to at least one endpoint by the endpoints' filters. */
  RecordsRouted: 'RecordsRouted',
  /** Valid records that match no endpoint's filter: acknowledged without a delivery. */
  RecordsUnrouted: 'RecordsUnrouted',
  DeadlineAborts: 'DeadlineAborts',
  QuarantineErrors: 'QuarantineErrors',
  BackoffErrors: 'BackoffErrors',
  LedgerErrors: 'LedgerErrors',
  BatchDuration: 'BatchDuration',
  /** Per endpoint: source records durably sent to the endpoint's lane (issue 16). */
  EventsParked: 'EventsParked',
  /** Per endpoint: events delivered from its lane. */
  LaneDelivered: 'LaneDelivered',
  /** Per endpoint: lane events sent to the DLQ after the last wait of its retrySchedule. */
  RetriesExhausted: 'RetriesExhausted',
  /** Per endpoint: the oldest first failure among a lane batch's records, in seconds. */
  LaneBacklogAgeS: 'LaneBacklogAgeS',
} as const;

export { MetricUnit };

export interface Observability {
  logger: Logger;
  metrics: Metrics;
  /** Present only when tracing is on (see `loadTracer`). */
  tracer?: Tracer;
}

type LoggerOptions = ConstructorParameters<typeof Logger>[0];

/**
 * A Powertools Logger whose children share its cold-start verdict. Powertools' createChild calls the child's own
 * addContext, whose cold-start flag is fresh: with AWS_LAMBDA_INITIALIZATION_TYPE=on-demand every per-record child
 * would say cold_start: true on warm invocations.
 */
export class IngestLogger extends Logger {
  #parent: IngestLogger | undefined;
  #coldStart = false;

  protected override getColdStart(): boolean {
    if (this.#parent) return this.#parent.#currentColdStart();
    this.#coldStart = super.getColdStart();
    return this.#coldStart;
  }

  #currentColdStart(): boolean {
    return this.#parent ? this.#parent.#currentColdStart() : this.#coldStart;
  }

  protected override createLogger(options?: LoggerOptions): Logger {
    const child = new IngestLogger(options);
    child.#parent = this;
    return child;
  }
}

/** The Powertools Logger and Metrics, configured by the standard POWERTOOLS_* variables with our defaults. */
export function createObservability(): Observability {
  const serviceName = process.env.POWERTOOLS_SERVICE_NAME || SERVICE_NAME;
  return {
    logger: new IngestLogger({ serviceName }),
    metrics: new Metrics({ serviceName, namespace: process.env.POWERTOOLS_METRICS_NAMESPACE || METRICS_NAMESPACE }),
  };
}

/** Powertools Tracer's own rule: on inside Lambda unless POWERTOOLS_TRACE_ENABLED=false, SAM local or Amplify mock. */
export function tracingWanted(env: Record<string, string | undefined> = process.env): boolean {
  const executionEnv = env.AWS_EXECUTION_ENV ?? '';
  return (
    (env.POWERTOOLS_TRACE_ENABLED ?? '').toLowerCase() !== 'false' &&
    executionEnv !== '' &&
    executionEnv !== 'AWS_Lambda_amplify-mock' &&
    !env.AWS_SAM_LOCAL
  );
}

/**
 * The Powertools Tracer, loaded only when tracing is on: importing the X-Ray SDK installs async hooks that make every
 * promise of the process several times slower (see BENCHMARKS.md), a cost worth paying only for traces.
 */
export async function loadTracer(): Promise<Tracer | undefined> {
  if (!tracingWanted()) return undefined;
  const { Tracer } = await import('@aws-lambda-powertools/tracer');
  // Our own subsegment per endpoint request names the endpoint; the automatic HTTP capture would only name the host.
  return new Tracer({ serviceName: process.env.POWERTOOLS_SERVICE_NAME || SERVICE_NAME, captureHTTPsRequests: false });
}

/** A Metrics instance whose every data point carries the endpoint dimension. */
/**
 * Powertools' logMetrics middleware (cold-start metric, flush after the handler or its error), except that it flushes
 * only what was stored: a lane batch's metrics are on the endpoint's own Metrics (lib/lanes), and flushing an empty
 * main one prints "No application metrics to publish" on every lane batch.
 */
export function publishStoredMetrics<E, R>(metrics: Metrics): MiddlewareObj<E, R, Error, Context> {
  const flush = async () => {
    if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  };
  return {
    before: async (request) => {
      metrics.captureColdStartMetric(request.context.functionName);
    },
    after: flush,
    onError: flush,
  };
}

export function endpointMetrics(endpoint: string): Metrics {
  return new Metrics({
    serviceName: process.env.POWERTOOLS_SERVICE_NAME || SERVICE_NAME,
    namespace: process.env.POWERTOOLS_METRICS_NAMESPACE || METRICS_NAMESPACE,
    defaultDimensions: { endpoint },
  });
}

/** A subsegment per endpoint request when tracing is on; nothing at all otherwise. */
export function traceRequests(tracer: Tracer | undefined): RequestObserver | undefined {
  if (!tracer?.isTracingEnabled()) return undefined;
  return (endpoint) => {
    const parent = tracer.getSegment();
    if (!parent) return undefined;
    const subsegment = parent.addNewSubsegment(`## endpoint ${endpoint}`);
    subsegment.addAnnotation('endpoint', endpoint);
    return ({ status, error }) => {
      if (status !== undefined) subsegment.addAnnotation('status', status);
      if (error !== undefined) subsegment.addError(new Error(error));
      subsegment.close();
    };
  };
}

/** Keeps a uniform sample of at most `size` values (reservoir sampling): one EMF line per endpoint per batch. */
export class Reservoir {
  readonly values: number[] = [];
  #seen = 0;
  constructor(
    private readonly size = 100,
    private readonly random = Math.random,
  ) {}

  add(value: number): void {
    this.#seen++;
    if (this.values.length < this.size) this.values.push(value);
    else {
      const slot = Math.floor(this.random() * this.#seen);
      if (slot < this.size) this.values[slot] = value;
    }
  }
}
