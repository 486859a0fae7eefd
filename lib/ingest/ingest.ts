import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { type ProcessedRecord, processBatch } from '../batch/batch';
import { type FanoutContext, type FanoutResult, fanout } from '../batch/fanout';
import type { Config } from '../config/config';
import {
  type LimitedRefresh,
  type LimitedSecretsRefresh,
  limitCredentialRefresh,
  limitSecretsRefresh,
} from '../credentials/credential-refresh';
import { lastGood } from '../credentials/last-good';
import { type Credential, Endpoint, EndpointDelivery } from '../delivery';
import { errorText } from '../errors';
import type { ValidEvent } from '../event';
import {
  createLanes,
  type LaneSender,
  type Lanes,
  type PauseReader,
  parkFailures,
  serveLane,
  unpackLaneBody,
} from '../lanes';
import {
  createObservability,
  endpointMetrics,
  MetricName,
  MetricUnit,
  type Observability,
  Reservoir,
  traceRequests,
} from '../observability/observability';
import { createSettle, isUnrouted, quarantineInOrder, type Settle, type SettleCounters } from '../settle/settle';
import { Subscriber } from '../subscription/subscriber';
import type { Backoff, Ledger, Quarantine } from '../types';

export { GROUPED_IDS_PER_LINE } from '../settle/settle';

export interface IngestDeps extends Partial<Observability> {
  quarantine?: Quarantine;
  backoff?: Backoff;
  ledger?: Ledger;
  /** Per-endpoint credentials, asked once per batch (the source caches them). */
  credentials?: () => Promise<ReadonlyMap<string, Credential>>;
  /** The endpoints file's secrets by reference (createSecretSource), asked once per batch. */
  secrets?: () => Promise<ReadonlyMap<string, string>>;
  /** Reads one endpoint's credential again bypassing the cache; asked at most once per endpoint per batch, on 401/403. */
  refreshCredential?: (endpoint: string) => Promise<Credential | undefined>;
  /** Reads one endpoint's secret references again bypassing the cache; at most once per endpoint per batch. */
  refreshSecrets?: (endpoint: string) => Promise<ReadonlyMap<string, string>>;
  /** For tests: the randomness behind retry jitter. */
  random?: () => number;
  /** Sends to the endpoints' lanes (createEdges, with LANE_QUEUE_URL_PREFIX): failing endpoints' events park there. */
  lanes?: LaneSender;
  /** Which endpoints are paused (their lanes' tags; createEdges): their events park at once, their lanes wait. */
  paused?: PauseReader;
}

export interface Ingest {
  handle(event: SQSEvent, context: Pick<Context, 'getRemainingTimeInMillis'>): Promise<SQSBatchResponse>;
  /** Closes the endpoints' connection pools. */
  close(): Promise<void>;
}

interface EndpointStats {
  delivered: number;
  failed: number;
  skipped: number;
  retries: number;
  latency: Reservoir;
}

/**
 * Side effects get until this long before Lambda's timeout, max(250 ms, margin/2), as the configuration guide says
 * for DEADLINE_MARGIN_MS; the answer itself needs the rest.
 */
export function settleReserveMs(marginMs: number): number {
  return Math.max(250, Math.floor(marginMs / 2));
}

function deadlineSignal(ms: number): { signal: AbortSignal; clear: () => void } {
  const controller = new AbortController();
  if (ms <= 0) {
    controller.abort();
    return { signal: controller.signal, clear: () => {} };
  }
  const timer = setTimeout(() => controller.abort(), ms);
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/**
 * Every record refused with 401/403 in one batch shares one read of the endpoint's credential; the records sent after
 * it use the new credential straight away.
 */
function refreshOncePerBatch(
  refresh: LimitedRefresh,
  batchCredentials: Map<string, Credential>,
): (endpoint: string) => Promise<Credential | undefined> {
  const reads = new Map<string, Promise<Credential | undefined>>();
  return (endpoint) => {
    let read = reads.get(endpoint);
    if (!read) {
      read = refresh(endpoint, batchCredentials.get(endpoint)).then((credential) => {
        if (credential) batchCredentials.set(endpoint, credential);
        return credential;
      });
      reads.set(endpoint, read);
    }
    return read;
  };
}

/**
 * The same for the endpoints file's secrets: one read per endpoint per batch, into the batch's own copy; resolves
 * whether any value changed (false: nothing new to retry with).
 */
function refreshSecretsOncePerBatch(
  refresh: LimitedSecretsRefresh,
  batchSecrets: Map<string, string>,
): (endpoint: string) => Promise<boolean> {
  const reads = new Map<string, Promise<boolean>>();
  return (endpoint) => {
    let read = reads.get(endpoint);
    if (!read) {
      read = refresh(endpoint, batchSecrets).then((fresh) => {
        if (!fresh) return false;
        for (const [key, value] of fresh) batchSecrets.set(key, value);
        return true;
      });
      reads.set(endpoint, read);
    }
    return read;
  };
}

/** One Subscriber per configured endpoint, each with its own delivery lane, pool and breaker. */
function createSubscribers(config: Config, observe: ReturnType<typeof traceRequests>, random?: () => number) {
  return config.endpoints.map((endpoint) => {
    const timeoutMs = endpoint.timeoutMs ?? config.deliveryTimeoutMs;
    const maxConnections = endpoint.maxConnections ?? config.endpointMaxConnections;
    const delivery = new EndpointDelivery(
      new Endpoint({ name: endpoint.name, url: endpoint.url, timeoutMs, maxConnections }, observe),
      {
        maxAttempts: endpoint.maxAttempts ?? config.deliveryMaxAttempts,
        baseMs: config.deliveryRetryBaseMs,
        maxMs: config.deliveryRetryMaxMs,
        breakerThreshold: config.circuitBreakerThreshold,
        breakerHalfOpenMs: config.circuitBreakerHalfOpenMs,
        maxConnections,
        ...(endpoint.rateLimitPerSecond !== undefined ? { rateLimitPerSecond: endpoint.rateLimitPerSecond } : {}),
      },
      random,
    );
    return new Subscriber(endpoint, delivery, { timeoutMs });
  });
}

type SecretsRead = readonly [
  ReadonlyMap<string, Credential> | null | undefined,
  ReadonlyMap<string, string> | null | undefined,
];

/** This invocation's credentials and secrets: fresh, or the last good ones when a read fails or is late; null: none. */
function createSecretsReader(deps: IngestDeps, logger: Logger): (signal: AbortSignal) => Promise<SecretsRead> {
  const credentialsRead = deps.credentials ? lastGood(deps.credentials) : undefined;
  const secretsRead = deps.secrets ? lastGood(deps.secrets) : undefined;
  return async (signal) => {
    const reads = await Promise.all([credentialsRead?.(signal), secretsRead?.(signal)]);
    for (const [what, read] of [
      ['credentials', reads[0]],
      ['secrets', reads[1]],
    ] as const) {
      if (read?.error !== undefined && read.value !== undefined) {
        logger.warn(`${what} not read again; using the last ones read`, { error: errorText(read.error) });
      }
    }
    const [credentials, secrets] = reads;
    return [credentials && (credentials.value ?? null), secrets && (secrets.value ?? null)] as const;
  };
}

/** What one instance wires together once; every batch uses it. */
interface Pipeline {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  endpoints: Subscriber[];
  routedTo: (event: ValidEvent) => string[];
  perEndpointMetrics: Map<string, Metrics>;
  quarantine: Quarantine | undefined;
  ledger: Ledger | undefined;
  settle: Settle;
  readSecrets: (signal: AbortSignal) => Promise<SecretsRead>;
  refreshLimited: LimitedRefresh | undefined;
  secretsLimited: LimitedSecretsRefresh | undefined;
  lanes: Lanes | undefined;
  readPaused: PauseReader | undefined;
}

/** The whole pipeline for one configuration: endpoints, pools and breakers live as long as the instance. */
export function createIngest(config: Config, deps: IngestDeps = {}): Ingest {
  const defaults = deps.logger && deps.metrics ? undefined : createObservability();
  const logger: Logger = deps.logger ?? defaults!.logger;
  const metrics: Metrics = deps.metrics ?? defaults!.metrics;
  const endpoints = createSubscribers(config, traceRequests(deps.tracer), deps.random);
  const filtered = config.endpoints.some((endpoint) => endpoint.filter !== undefined);
  const allNames = endpoints.map((endpoint) => endpoint.name);
  const { quarantine, backoff, ledger } = deps;
  const pipeline: Pipeline = {
    config,
    logger,
    metrics,
    endpoints,
    routedTo: (event) =>
      filtered ? endpoints.filter((endpoint) => endpoint.routes(event)).map((endpoint) => endpoint.name) : allNames,
    perEndpointMetrics: new Map(config.endpoints.map((endpoint) => [endpoint.name, endpointMetrics(endpoint.name)])),
    quarantine,
    ledger,
    settle: createSettle({ logger, ledgerMode: config.ledgerMode, quarantine, backoff, ledger }),
    readSecrets: createSecretsReader(deps, logger),
    refreshLimited: deps.refreshCredential ? limitCredentialRefresh(deps.refreshCredential) : undefined,
    secretsLimited: deps.refreshSecrets ? limitSecretsRefresh(deps.refreshSecrets) : undefined,
    lanes: createLanes(config, deps.lanes),
    readPaused: deps.paused,
  };
  return {
    handle: (event, context) => handle(pipeline, event, context),
    async close() {
      for (const endpoint of endpoints) endpoint.close();
    },
  };
}

/** One batch: deliver within the deadline, settle the outcomes within the reserve, answer with what is undelivered. */
async function handle(
  pipeline: Pipeline,
  event: SQSEvent,
  context: Pick<Context, 'getRemainingTimeInMillis'>,
): Promise<SQSBatchResponse> {
  const { config, logger } = pipeline;
  // A lane message whose body did not fit beside its envelope (lib/lanes/body.ts) reads as the producer sent it.
  const received = event?.Records ?? [];
  const records = received.map(unpackLaneBody);
  if (records.length === 0) return { batchItemFailures: [] };
  const started = Date.now();
  const remaining = context.getRemainingTimeInMillis();
  const deliveryDeadline = deadlineSignal(remaining - config.deadlineMarginMs);
  const settleDeadline = deadlineSignal(remaining - settleReserveMs(config.deadlineMarginMs));
  const counters: SettleCounters = { ledgerErrors: 0, quarantineErrors: 0, backoffErrors: 0 };
  const stats = newStats(config);
  try {
    const { lanes } = pipeline;
    const lane = lanes?.laneOf(records);
    const [[fetched, fetchedSecrets], paused] = await Promise.all([
      pipeline.readSecrets(deliveryDeadline.signal),
      readPaused(pipeline, lane, deliveryDeadline.signal),
    ]);
    if (fetched === null || fetchedSecrets === null) return answerUnavailable(pipeline, records, started);
    const fanoutContext = {
      signal: deliveryDeadline.signal,
      deadlineAt: started + remaining - config.deadlineMarginMs,
      ...batchSecrets(pipeline, fetched, fetchedSecrets),
    };
    if (lanes && lane !== undefined) {
      const at = { lanes, endpoint: lane, paused: paused(lane), received };
      return await answerLane(pipeline, at, records, fanoutContext, settleDeadline.signal);
    }
    const count = countInto(stats);
    const sourceContext = { ...fanoutContext, paused };
    // Not async: one promise less per event on the hot path.
    const deliver = (valid: ValidEvent, already: ReadonlySet<string> | undefined) =>
      fanout(valid, pipeline.endpoints, already, sourceContext).then(count);
    const lookup = ledgerLookup(pipeline, deliveryDeadline.signal, counters);
    const { quarantine } = pipeline;

    const delivered = await processBatch(records, {
      maxEventBytes: config.maxEventBytes,
      lookupFirstReceives: config.ledgerMode === 'every-delivery',
      ...(quarantine ? { quarantineInOrder: quarantineInOrder(logger, quarantine, deliveryDeadline.signal) } : {}),
      deliver,
      routedTo: pipeline.routedTo,
      ...(lookup ? { lookup } : {}),
    });
    // A side effect like settle's, under its deadline: the delivery deadline has fired when an endpoint held the batch.
    const processed = lanes ? await park(pipeline, { ...lanes, paused }, delivered, settleDeadline.signal) : delivered;
    const deadlineAborted = deliveryDeadline.signal.aborted;
    const failedIds = await pipeline.settle(processed, settleDeadline.signal, counters);

    const summary = summarise(processed, failedIds);
    publishMetrics(pipeline, { summary, counters, deadlineAborted, durationMs: Date.now() - started, stats });
    logger.info('batch processed', {
      ...summary,
      deadlineAborted,
      durationMs: Date.now() - started,
      endpoints: endpointTotals(stats),
    });
    return { batchItemFailures: [...failedIds].map((itemIdentifier) => ({ itemIdentifier })) };
  } finally {
    deliveryDeadline.clear();
    settleDeadline.clear();
  }
}

/** This batch's paused endpoints (only the lane's own on a lane batch); nothing is paused without lanes. */
async function readPaused(
  pipeline: Pipeline,
  lane: string | undefined,
  signal: AbortSignal,
): Promise<(endpoint: string) => boolean> {
  const { readPaused: read, lanes, config, logger } = pipeline;
  if (!read || !lanes) return () => false;
  let { paused, errors } = await read(lane !== undefined ? [lane] : allNames(config), signal);
  // A paused lane's mapping is disabled: a batch from it may mean it was resumed since the cached read.
  if (lane !== undefined && paused.has(lane)) ({ paused, errors } = await read([lane], signal, { fresh: true }));
  if (errors.length > 0) {
    logger.warn('pause tags not read; using the last ones read (none: not paused)', {
      endpoints: errors.map((e) => e.endpoint).join(','),
      error: errorText(errors[0]!.error),
      hint: 'check that each lane queue exists and that the function may sqs:ListQueueTags on it',
    });
  }
  return (endpoint) => paused.has(endpoint);
}

const allNames = (config: Config) => config.endpoints.map((endpoint) => endpoint.name);

/** The source path's park step: long-failing endpoints' events go to their lanes before the batch is settled. */
function park(
  pipeline: Pipeline,
  lanes: Lanes & { paused: (endpoint: string) => boolean },
  processed: ProcessedRecord[],
  signal: AbortSignal,
) {
  const { config, logger, perEndpointMetrics } = pipeline;
  return parkFailures(processed, { ...lanes, parkAfterS: config.parkAfterS, signal, logger, perEndpointMetrics });
}

/** A lane batch: one endpoint's parked events, served by lib/lanes. */
async function answerLane(
  pipeline: Pipeline,
  { lanes, endpoint, paused, received }: { lanes: Lanes; endpoint: string; paused: boolean; received: SQSRecord[] },
  records: SQSRecord[],
  fanoutContext: FanoutContext,
  sideSignal: AbortSignal,
): Promise<SQSBatchResponse> {
  const { config } = pipeline;
  const asReceived = new Map(received.map((record) => [record.messageId, record]));
  const failed = await serveLane(records, {
    endpoint,
    subscriber: pipeline.endpoints.find((subscriber) => subscriber.name === endpoint),
    schedule: lanes.schedule(endpoint),
    paused,
    maxEventBytes: config.maxEventBytes,
    send: lanes.send,
    quarantine: pipeline.quarantine,
    ledger: pipeline.ledger,
    fanoutContext,
    sideSignal,
    asReceived: (record) => asReceived.get(record.messageId) ?? record,
    logger: pipeline.logger,
    metrics: pipeline.perEndpointMetrics.get(endpoint) ?? endpointMetrics(endpoint),
  });
  return { batchItemFailures: [...failed].map((itemIdentifier) => ({ itemIdentifier })) };
}

/** No credential was ever read (the cold start's read went elsewhere) and this one failed: nothing can go. */
function answerUnavailable(pipeline: Pipeline, records: SQSRecord[], started: number): SQSBatchResponse {
  const { logger, metrics } = pipeline;
  logger.error('credentials unavailable; every record reported failed', {
    records: records.length,
    hint: 'check that the function can read its SSM parameters / Secrets Manager secrets (IAM, KMS, throttling)',
  });
  metrics.addMetric(MetricName.RecordsReceived, MetricUnit.Count, records.length);
  metrics.addMetric(MetricName.RecordsFailed, MetricUnit.Count, records.length);
  const durationMs = Date.now() - started;
  logger.info('batch processed', {
    records: records.length,
    acknowledged: 0,
    failed: records.length,
    durationMs,
  });
  return { batchItemFailures: records.map((record) => ({ itemIdentifier: record.messageId })) };
}

/** This batch's own copies: a refresh after a 401/403 replaces an entry for the records sent after it. */
function batchSecrets(
  pipeline: Pipeline,
  fetched: ReadonlyMap<string, Credential> | undefined,
  fetchedSecrets: ReadonlyMap<string, string> | undefined,
) {
  const { refreshLimited, secretsLimited } = pipeline;
  const credentials = fetched ? new Map(fetched) : undefined;
  const secrets = fetchedSecrets ? new Map(fetchedSecrets) : undefined;
  return {
    ...(credentials ? { credentials } : {}),
    ...(secrets ? { secrets } : {}),
    ...(credentials && refreshLimited ? { refreshCredential: refreshOncePerBatch(refreshLimited, credentials) } : {}),
    ...(secrets && secretsLimited ? { refreshSecrets: refreshSecretsOncePerBatch(secretsLimited, secrets) } : {}),
  };
}

/** Which endpoints already have each event, from the ledger; undefined without a ledger. Never throws. */
function ledgerLookup(pipeline: Pipeline, signal: AbortSignal, counters: SettleCounters) {
  const { ledger, logger, routedTo } = pipeline;
  if (!ledger) return undefined;
  return async (keys: string[], events: readonly ValidEvent[]) => {
    // Only the endpoints each event is routed to: an event routed nowhere needs no read at all. Records of one event
    // routed differently ask about every endpoint any of them is routed to.
    const routed = new Map<string, readonly string[]>();
    for (const e of events) {
      const names = routedTo(e);
      const before = routed.get(e.key);
      routed.set(e.key, before ? [...new Set([...before, ...names])] : names);
    }
    const wanted = keys.filter((key) => (routed.get(key)?.length ?? 0) > 0);
    if (wanted.length === 0) return new Map<string, Set<string>>();
    try {
      return await ledger.lookup(wanted, signal, (key) => routed.get(key) ?? []);
    } catch (error) {
      counters.ledgerErrors++;
      logger.warn('delivery ledger unavailable; delivering to every endpoint each event is routed to', {
        error: errorText(error),
      });
      return new Map<string, Set<string>>();
    }
  };
}

function newStats(config: Config): Map<string, EndpointStats> {
  return new Map(
    config.endpoints.map((endpoint) => [
      endpoint.name,
      { delivered: 0, failed: 0, skipped: 0, retries: 0, latency: new Reservoir() },
    ]),
  );
}

/** Adds one event's per-endpoint results to the batch's stats, passing the results on. */
function countInto(stats: Map<string, EndpointStats>): (fan: FanoutResult) => FanoutResult {
  const count = (fan: FanoutResult) => {
    for (const name of fan.skipped) stats.get(name)!.skipped++;
    for (const result of fan.results) {
      // A paused endpoint was not asked: neither a delivery nor a failure of it.
      if (!result.ok && result.kind === 'paused') continue;
      const stat = stats.get(result.endpoint)!;
      stat.retries += result.attempts - 1;
      // A record still waiting for a rate-limit token at the deadline is not the endpoint failing.
      if (result.ok) {
        stat.delivered++;
        stat.latency.add(result.latencyMs);
      } else if (result.error !== 'RATE_LIMIT_WAIT') stat.failed++;
    }
    return fan;
  };
  return count;
}

function endpointTotals(stats: Map<string, EndpointStats>) {
  return Object.fromEntries(
    [...stats].map(([name, stat]) => [
      name,
      { delivered: stat.delivered, failed: stat.failed, skipped: stat.skipped, retries: stat.retries },
    ]),
  );
}

function summarise(processed: ProcessedRecord[], failedIds: Set<string>) {
  let invalid = 0;
  let rejected = 0;
  let blocked = 0;
  let unrouted = 0;
  let routed = 0;
  for (const { outcome } of processed) {
    if (isUnrouted(outcome)) unrouted++;
    else if (outcome.kind !== 'invalid' && outcome.kind !== 'blocked') routed++;
    if (outcome.kind === 'invalid') invalid++;
    else if (outcome.kind === 'rejected') rejected++;
    else if (outcome.kind === 'blocked') blocked++;
  }
  const quarantined = processed.filter(
    (item) =>
      (item.outcome.kind === 'invalid' || item.outcome.kind === 'rejected') && !failedIds.has(item.record.messageId),
  ).length;
  return {
    records: processed.length,
    acknowledged: processed.length - failedIds.size,
    failed: failedIds.size,
    invalid,
    rejected,
    quarantined,
    blocked,
    routed,
    unrouted,
  };
}

interface BatchReport {
  summary: ReturnType<typeof summarise>;
  counters: SettleCounters;
  deadlineAborted: boolean;
  durationMs: number;
  stats: Map<string, EndpointStats>;
}

function publishMetrics(pipeline: Pipeline, report: BatchReport) {
  const { metrics, perEndpointMetrics } = pipeline;
  const { summary, counters, deadlineAborted, durationMs, stats } = report;
  metrics.addMetric(MetricName.RecordsReceived, MetricUnit.Count, summary.records);
  metrics.addMetric(MetricName.RecordsAcknowledged, MetricUnit.Count, summary.acknowledged);
  metrics.addMetric(MetricName.RecordsFailed, MetricUnit.Count, summary.failed);
  metrics.addMetric(MetricName.RecordsInvalid, MetricUnit.Count, summary.invalid);
  metrics.addMetric(MetricName.RecordsQuarantined, MetricUnit.Count, summary.quarantined);
  metrics.addMetric(MetricName.RecordsRouted, MetricUnit.Count, summary.routed);
  metrics.addMetric(MetricName.RecordsUnrouted, MetricUnit.Count, summary.unrouted);
  metrics.addMetric(MetricName.DeadlineAborts, MetricUnit.Count, deadlineAborted ? 1 : 0);
  metrics.addMetric(MetricName.QuarantineErrors, MetricUnit.Count, counters.quarantineErrors);
  metrics.addMetric(MetricName.BackoffErrors, MetricUnit.Count, counters.backoffErrors);
  metrics.addMetric(MetricName.LedgerErrors, MetricUnit.Count, counters.ledgerErrors);
  metrics.addMetric(MetricName.BatchDuration, MetricUnit.Milliseconds, durationMs);
  for (const [name, stat] of stats) {
    const endpoint = perEndpointMetrics.get(name)!;
    endpoint.addMetric(MetricName.DeliverySucceeded, MetricUnit.Count, stat.delivered);
    endpoint.addMetric(MetricName.DeliveryFailed, MetricUnit.Count, stat.failed);
    endpoint.addMetric(MetricName.DeliveryRetries, MetricUnit.Count, stat.retries);
    endpoint.addMetric(MetricName.DeliverySkipped, MetricUnit.Count, stat.skipped);
    for (const value of stat.latency.values) {
      endpoint.addMetric(MetricName.DeliveryLatency, MetricUnit.Milliseconds, Math.round(value * 100) / 100);
    }
    if (endpoint.hasStoredMetrics()) endpoint.publishStoredMetrics();
  }
}
