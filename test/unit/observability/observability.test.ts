import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createObservability,
  endpointMetrics,
  loadTracer,
  METRICS_NAMESPACE,
  MetricName,
  MetricUnit,
  Reservoir,
  SERVICE_NAME,
  traceRequests,
  tracingWanted,
} from '../../../lib/observability/observability';

/** A small deterministic PRNG (mulberry32), so the sampling checks give the same answer on every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describe('Reservoir', () => {
  it('keeps every value while there are no more than its size', () => {
    const reservoir = new Reservoir(5, () => 0);
    for (const value of [3, 1, 4]) reservoir.add(value);
    expect(reservoir.values).toEqual([3, 1, 4]);
  });

  it('never holds more than its size, and only values it was given', () => {
    const reservoir = new Reservoir(10, seeded(1));
    const input = Array.from({ length: 1000 }, (_, i) => i * 7);
    for (const value of input) reservoir.add(value);
    expect(reservoir.values).toHaveLength(10);
    const given = new Set(input);
    for (const value of reservoir.values) expect(given.has(value)).toBe(true);
    expect(new Set(reservoir.values).size).toBe(10);
  });

  it('defaults to 100 values', () => {
    const reservoir = new Reservoir();
    for (let i = 0; i < 250; i++) reservoir.add(i);
    expect(reservoir.values).toHaveLength(100);
  });

  it('replaces the slot the random draw picks, or nothing when the draw falls past the reservoir', () => {
    const draws = [0.1, 0.9, 0.5];
    const reservoir = new Reservoir(2, () => draws.shift() ?? 0);
    reservoir.add(10);
    reservoir.add(20);
    reservoir.add(30); // floor(0.1 × 3) = 0 → replaces the first slot
    expect(reservoir.values).toEqual([30, 20]);
    reservoir.add(40); // floor(0.9 × 4) = 3 ≥ 2 → dropped
    expect(reservoir.values).toEqual([30, 20]);
    reservoir.add(50); // floor(0.5 × 5) = 2 ≥ 2 → dropped
    expect(reservoir.values).toEqual([30, 20]);
  });

  it('samples uniformly: every input position is kept about size/n of the time', () => {
    const size = 10;
    const n = 100;
    const trials = 2000;
    const random = seeded(42);
    const kept = new Array<number>(n).fill(0);
    for (let trial = 0; trial < trials; trial++) {
      const reservoir = new Reservoir(size, random);
      for (let i = 0; i < n; i++) reservoir.add(i);
      for (const value of reservoir.values) kept[value] = (kept[value] ?? 0) + 1;
    }
    // Expected 200 per position (σ ≈ 13.4); a sampler biased to early or late values lands far outside ±60.
    const expected = (trials * size) / n;
    for (const count of kept) expect(Math.abs(count - expected)).toBeLessThan(60);
    const firstHalf = kept.slice(0, n / 2).reduce((sum, count) => sum + count, 0);
    expect(Math.abs(firstHalf - (trials * size) / 2)).toBeLessThan(300);
  });
});

describe('names', () => {
  it('metric names are the documented ones', () => {
    expect(Object.values(MetricName).sort()).toEqual(
      [
        'DeliverySucceeded',
        'DeliveryFailed',
        'DeliveryRetries',
        'DeliverySkipped',
        'DeliveryLatency',
        'RecordsReceived',
        'RecordsAcknowledged',
        'RecordsFailed',
        'RecordsInvalid',
        'RecordsQuarantined',
        'RecordsRouted',
        'RecordsUnrouted',
        'DeadlineAborts',
        'QuarantineErrors',
        'BackoffErrors',
        'LedgerErrors',
        'BatchDuration',
        'EventsParked',
        'LaneDelivered',
        'RetriesExhausted',
        'LaneBacklogAgeS',
      ].sort(),
    );
    for (const [key, value] of Object.entries(MetricName)) expect(value).toBe(key);
  });

  it('service and namespace defaults', () => {
    expect(SERVICE_NAME).toBe('ingest-fanout');
    expect(METRICS_NAMESPACE).toBe('IngestFanout');
  });
});

describe('Powertools instances', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  function emf(metrics: ReturnType<typeof endpointMetrics>) {
    const output = metrics.serializeMetrics() as unknown as {
      _aws: { CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][] }> };
      [key: string]: unknown;
    };
    return { directive: output._aws.CloudWatchMetrics[0], values: output };
  }

  it('batch metrics go to namespace IngestFanout with the service dimension', () => {
    vi.stubEnv('POWERTOOLS_SERVICE_NAME', '');
    vi.stubEnv('POWERTOOLS_METRICS_NAMESPACE', '');
    const { metrics } = createObservability();
    metrics.addMetric(MetricName.RecordsAcknowledged, MetricUnit.Count, 3);
    const { directive, values } = emf(metrics);
    expect(directive?.Namespace).toBe('IngestFanout');
    expect(directive?.Dimensions).toEqual([['service']]);
    expect(values.service).toBe('ingest-fanout');
    expect(values.RecordsAcknowledged).toBe(3);
  });

  it('per-endpoint metrics carry the endpoint dimension as well', () => {
    const metrics = endpointMetrics('audit');
    metrics.addMetric(MetricName.DeliveryLatency, MetricUnit.Milliseconds, 12);
    const { directive, values } = emf(metrics);
    expect(directive?.Namespace).toBe('IngestFanout');
    expect(directive?.Dimensions?.[0]?.sort()).toEqual(['endpoint', 'service']);
    expect(values.endpoint).toBe('audit');
    expect(values.DeliveryLatency).toBe(12);
  });

  it('honours POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE', () => {
    vi.stubEnv('POWERTOOLS_SERVICE_NAME', 'ingest-eu');
    vi.stubEnv('POWERTOOLS_METRICS_NAMESPACE', 'IngestStaging');
    const metrics = endpointMetrics('search');
    metrics.addMetric(MetricName.DeliverySucceeded, MetricUnit.Count, 1);
    const { directive, values } = emf(metrics);
    expect(directive?.Namespace).toBe('IngestStaging');
    expect(values.service).toBe('ingest-eu');
  });

  it('with tracing off, the X-Ray SDK is not even loaded and requests are not observed', async () => {
    expect(createObservability().tracer).toBeUndefined();
    expect(await loadTracer()).toBeUndefined();
    expect(traceRequests(undefined)).toBeUndefined();
  });

  it('wants tracing exactly where Powertools Tracer would trace', () => {
    const lambda = { AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x' };
    expect(tracingWanted(lambda)).toBe(true);
    expect(tracingWanted({})).toBe(false);
    expect(tracingWanted({ ...lambda, POWERTOOLS_TRACE_ENABLED: 'FALSE' })).toBe(false);
    expect(tracingWanted({ ...lambda, AWS_SAM_LOCAL: 'true' })).toBe(false);
    expect(tracingWanted({ AWS_EXECUTION_ENV: 'AWS_Lambda_amplify-mock' })).toBe(false);
  });

  it('in Lambda with tracing on, loads the Tracer with a subsegment per endpoint request', async () => {
    vi.stubEnv('AWS_EXECUTION_ENV', 'AWS_Lambda_nodejs24.x');
    vi.stubEnv('POWERTOOLS_TRACE_ENABLED', 'true');
    const tracer = await loadTracer();
    expect(tracer?.isTracingEnabled()).toBe(true);
    expect(typeof traceRequests(tracer)).toBe('function');
  });
});
