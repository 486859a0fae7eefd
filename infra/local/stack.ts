import { loadConfig } from '../../lib/config/config';
import { PAUSED_TAG } from '../../lib/lanes/pause';
import type { Router } from '../../lib/subscription/routing';
import { UsageError } from './cli';
import { type DemoEndpoints, type FaultPlan, startDemoEndpoints } from './demo-endpoints';
import { type LocalLedger, startLocalLedger } from './dynamodb-server';
import { startLocalEndpoints } from './endpoints-file';
import { type EventSourceOptions, type InvocationReport, SqsEventSource, type SqsHandler } from './event-source';
import type { HandlerTelemetry } from './handler-output';
import { SqsFaultProxy } from './sqs-proxy';
import { DUMMY_CREDENTIALS, LOCAL_REGION, type LocalQueue, type LocalSqs, startLocalSqs } from './sqs-server';
import { endpointStats, type StatusSnapshot } from './status';

/**
 * Handler settings for a laptop: failed records come back within seconds instead of minutes, and a stuck
 * endpoint's breaker half-opens after 1 s. The user's environment overrides any of them.
 */
export const LOCAL_HANDLER_DEFAULTS: Readonly<Record<string, string>> = {
  RETRY_BASE_DELAY_S: '1',
  RETRY_MAX_DELAY_S: '5',
  DELIVERY_TIMEOUT_MS: '2000',
  CIRCUIT_BREAKER_HALF_OPEN_MS: '1000',
  // A failing endpoint's events move to its lane after 5 s instead of 5 min.
  PARK_AFTER_S: '5',
  // A lane retries for about 8 min, at most 30 s apart, instead of about a day: an outage drains in minutes.
  LANE_RETRY_SCHEDULE: [1, 2, 5, 10, 20, ...Array<number>(15).fill(30)].join(','),
  POWERTOOLS_LOG_LEVEL: 'INFO',
  // The status panel and the demo summary read the handler's EMF metrics.
  POWERTOOLS_METRICS_DISABLED: 'false',
  // No X-Ray daemon runs locally.
  POWERTOOLS_TRACE_ENABLED: 'false',
};

/** Each lane's mapping, as the template sets it: batches of 10, at most 2 concurrent invocations. */
export const LANE_BATCH_SIZE = 10;
export const LANE_CONCURRENCY = 2;

/** Function timeout of the local stack unless told otherwise. */
export const LOCAL_FUNCTION_TIMEOUT_MS = 5000;

/** The real handler was already imported with another configuration; it reads its environment once per process. */
export class HandlerReloadError extends Error {
  override readonly name = 'HandlerReloadError';
  constructor(readonly variables: string[]) {
    super(
      `the handler was already loaded in this process with different ${variables.join(', ')}: it reads its ` +
        'configuration once, at import (cold start); run one local stack per process',
    );
  }
}

let loaded: { env: Record<string, string>; handler: SqsHandler } | undefined;

/** Sets the handler's environment and imports functions/ingest/handler.ts (its cold start). */
export async function loadRealHandler(env: Record<string, string>): Promise<SqsHandler> {
  if (loaded) {
    const changed = Object.keys({ ...loaded.env, ...env }).filter((key) => loaded?.env[key] !== env[key]);
    if (changed.length > 0) throw new HandlerReloadError(changed);
    return loaded.handler;
  }
  Object.assign(process.env, env);
  const module = await import('../../functions/ingest/handler');
  loaded = { env: { ...env }, handler: module.handler as SqsHandler };
  return loaded.handler;
}

export interface LocalStackOptions {
  /** Port of the embedded SQS server; 0 (default) picks a free one. */
  sqsPort?: number;
  queueName?: string;
  dlqName?: string;
  /** Receives before SQS dead-letters a message (the embedded server's default: 5). */
  maxReceiveCount?: number;
  /** ENDPOINTS to deliver to instead of starting the three demo endpoints. */
  endpoints?: string;
  /** A stage's endpoints file (YAML) instead: see startLocalEndpoints for what runs locally. */
  endpointsFile?: string;
  /** Values of the endpoints file's secret references (YAML: ssm: {name: value}, secretsmanager: {...}). */
  secretsFile?: string;
  /** Faults the demo endpoints inject. */
  faults?: FaultPlan;
  /** The function timeout: the context deadline, and when an unanswered invocation fails. Default 5000 ms. */
  functionTimeoutMs?: number;
  /** Source queue visibility timeout. Default twice the function timeout (at least 2 s). */
  visibilityTimeoutS?: number;
  batchSize?: number;
  maximumBatchingWindowS?: number;
  /** Pollers (concurrent invocations). Default 2. */
  concurrency?: number;
  pollWaitS?: number;
  /** SQS's in-flight limit per queue, scaled down: at it the emulated mapping's receives answer empty. */
  inflightCeiling?: number;
  /**
   * One lane per endpoint (issue 16), consumed by the same handler, and LANE_QUEUE_URL_PREFIX set so that it parks
   * there. `npm start`, the demo and the chaos run ask for it unless --no-lanes, as a deployed standard stage has
   * lanes; off when not asked, so tests of the stack itself run no lane pollers they do not need.
   */
  lanes?: boolean;
  /** Handler settings that yield to the user's environment. Merged over LOCAL_HANDLER_DEFAULTS. */
  defaults?: Record<string, string>;
  /** Handler settings that win over the user's environment. */
  env?: Record<string, string>;
  /** Put an SqsFaultProxy between the handler and SQS, so its calls (quarantine, backoff) can be made to fail. */
  faultProxy?: boolean;
  /** Start a local DynamoDB (dynalite) with the delivery ledger table and point DELIVERY_LEDGER_TABLE at it. */
  ledger?: boolean;
  /** A handler to run instead of the real one (tests of the stack itself). */
  handler?: SqsHandler;
  onInvocation?: (report: InvocationReport) => void;
  onPollError?: (error: unknown) => void;
  /** The user's environment; process.env by default. */
  baseEnv?: Record<string, string | undefined>;
}

export interface LocalStack {
  sqs: LocalSqs;
  /** The demo endpoints, unless ENDPOINTS was given (with an endpoints file: those standing in for remote URLs). */
  demo?: DemoEndpoints;
  /** With an endpoints file: each endpoint's filter, and a banner line per endpoint. */
  routes?: Map<string, Router>;
  endpointLines?: string[];
  proxy?: SqsFaultProxy;
  /** The local delivery ledger, when asked for. */
  ledger?: LocalLedger;
  eventSource: SqsEventSource;
  /** Per endpoint: its lane queue and the mapping that runs the same handler on it. */
  lanes: Map<string, LocalLane>;
  /** The environment the handler was started with. */
  env: Record<string, string>;
  functionTimeoutMs: number;
  visibilityTimeoutS: number;
  concurrency: number;
  startedAt: number;
  snapshot(handler?: HandlerTelemetry): Promise<StatusSnapshot>;
  /** Stops every mapping (source and lanes) and waits for their running invocations. */
  stopPolling(): Promise<void>;
  /** Stops polling, lets running invocations finish, then closes every server. */
  stop(): Promise<void>;
}

export interface LocalLane {
  queue: LocalQueue;
  eventSource: SqsEventSource;
}

/** The endpoints' names, for their lanes: from the endpoints file, the demo endpoints, or ENDPOINTS as the handler reads it. */
function endpointNames(routes: Map<string, Router> | undefined, env: Record<string, string>): string[] {
  return routes ? [...routes.keys()] : loadConfig(env).endpoints.map((endpoint) => endpoint.name);
}

/** The variables the handler gets: defaults, then the user's own, then the wiring to the local servers. */
export function handlerEnvironment(
  wiring: Record<string, string>,
  defaults: Record<string, string>,
  base: Record<string, string | undefined>,
  forced: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = { ...defaults };
  for (const key of Object.keys(defaults)) {
    const value = base[key];
    if (value !== undefined && value !== '') env[key] = value;
  }
  return { ...env, ...wiring, ...forced };
}

/**
 * Starts the whole pipeline on loopback: local SQS (queue + DLQ), the demo endpoints (unless `endpoints`), the
 * real handler (or `handler`) and the event source mapping in front of it, polling.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const functionTimeoutMs = options.functionTimeoutMs ?? LOCAL_FUNCTION_TIMEOUT_MS;
  const concurrency = options.concurrency ?? 2;
  const visibilityTimeoutS = options.visibilityTimeoutS ?? Math.max(2, Math.ceil((2 * functionTimeoutMs) / 1000));
  const base = options.baseEnv ?? process.env;
  if (options.endpointsFile && base.ENDPOINTS?.trim()) {
    // Refused here: the handler would name the rewritten copy of the file in a temporary folder, not the user's.
    throw new UsageError(
      `ENDPOINTS is set and so is --endpoints ${options.endpointsFile}: keep one list of endpoints (unset ENDPOINTS, ` +
        'or leave out --endpoints)',
    );
  }
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    // Last started, first stopped: the pollers before the servers they talk to.
    for (const close of closers.splice(0).reverse()) await close().catch(() => {});
  };
  try {
    const sqs = await startLocalSqs({
      port: options.sqsPort ?? 0,
      ...(options.queueName ? { queueName: options.queueName } : {}),
      ...(options.dlqName ? { dlqName: options.dlqName } : {}),
      ...(options.maxReceiveCount ? { maxReceiveCount: options.maxReceiveCount } : {}),
      visibilityTimeoutS,
    });
    closers.push(() => sqs.close());
    const local = options.endpointsFile
      ? await startLocalEndpoints(options.endpointsFile, options.secretsFile, options.faults ?? { rate: 0 })
      : undefined;
    if (local) closers.push(() => local.close());
    const demo =
      local?.demo ?? (options.endpoints || local ? undefined : await startDemoEndpoints(options.faults ?? { rate: 0 }));
    if (demo && !local) closers.push(() => demo.close());
    const proxy = options.faultProxy ? await SqsFaultProxy.start(sqs.endpoint) : undefined;
    if (proxy) closers.push(() => proxy.close());
    const ledger = options.ledger ? await startLocalLedger() : undefined;
    if (ledger) closers.push(() => ledger.close());

    // The handler reaches SQS (quarantine, backoff) through the proxy when there is one.
    const handlerSqs = proxy?.endpoint ?? sqs.endpoint;
    const wiring: Record<string, string> = {
      ...(local ? local.env : { ENDPOINTS: options.endpoints ?? demo!.envValue }),
      QUARANTINE_QUEUE_URL: `${handlerSqs}${new URL(sqs.dlq.url).pathname}`,
      AWS_ENDPOINT_URL_SQS: handlerSqs,
      AWS_REGION: LOCAL_REGION,
      AWS_DEFAULT_REGION: LOCAL_REGION,
      // Never the user's real AWS credentials: everything here is local.
      AWS_ACCESS_KEY_ID: DUMMY_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: DUMMY_CREDENTIALS.secretAccessKey,
      ...(ledger ? { DELIVERY_LEDGER_TABLE: ledger.table, AWS_ENDPOINT_URL_DYNAMODB: ledger.endpoint } : {}),
    };
    const defaults = { ...LOCAL_HANDLER_DEFAULTS, ...options.defaults };
    const names = options.lanes
      ? endpointNames(local?.routes, handlerEnvironment(wiring, defaults, base, options.env))
      : [];
    const laneQueues = options.lanes ? await sqs.createLanes(names) : undefined;
    // The function finds its lanes by URL prefix (through the proxy when there is one), as on AWS.
    if (laneQueues) wiring.LANE_QUEUE_URL_PREFIX = `${handlerSqs}${new URL(laneQueues.prefix).pathname}`;
    const env = handlerEnvironment(wiring, defaults, base, options.env);
    const handler = options.handler ?? (await loadRealHandler(env));

    const mapping = (queue: LocalQueue, settings: Partial<EventSourceOptions>) =>
      new SqsEventSource({
        client: sqs.client,
        queue,
        handler,
        functionTimeoutMs,
        ...(options.pollWaitS !== undefined ? { pollWaitS: options.pollWaitS } : {}),
        ...(options.inflightCeiling !== undefined ? { inflightCeiling: options.inflightCeiling } : {}),
        ...(options.onInvocation ? { onInvocation: options.onInvocation } : {}),
        ...(options.onPollError ? { onPollError: options.onPollError } : {}),
        ...settings,
      });
    const eventSource = mapping(sqs.queue, {
      concurrency,
      ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
      ...(options.maximumBatchingWindowS !== undefined
        ? { maximumBatchingWindowS: options.maximumBatchingWindowS }
        : {}),
    });
    const lanes = new Map<string, LocalLane>();
    for (const [name, queue] of laneQueues?.byEndpoint ?? []) {
      lanes.set(name, {
        queue,
        // A paused endpoint's lane is not read, as its disabled mapping on AWS (npm run endpoint -- pause).
        eventSource: mapping(queue, {
          batchSize: LANE_BATCH_SIZE,
          concurrency: LANE_CONCURRENCY,
          // Read twice a second: local SQS calls cost nothing, and a pause then races fewer parked events.
          disabledByTag: { tag: PAUSED_TAG, checkEveryMs: 500 },
        }),
      });
    }
    const sources = [eventSource, ...[...lanes.values()].map((lane) => lane.eventSource)];
    const stopPolling = async () => {
      await Promise.all(sources.map((source) => source.stop()));
    };
    for (const source of sources) source.start();
    closers.push(stopPolling);
    const startedAt = Date.now();

    return {
      sqs,
      ...(demo ? { demo } : {}),
      ...(proxy ? { proxy } : {}),
      ...(ledger ? { ledger } : {}),
      ...(local ? { routes: local.routes, endpointLines: local.lines } : {}),
      eventSource,
      lanes,
      env,
      functionTimeoutMs,
      visibilityTimeoutS,
      concurrency,
      startedAt,
      async snapshot(telemetry?: HandlerTelemetry): Promise<StatusSnapshot> {
        const [queueDepth, dlqDepth, ...laneDepths] = await Promise.all([
          sqs.depth(sqs.queue.url),
          sqs.depth(sqs.dlq.url),
          ...[...lanes.values()].map((lane) => sqs.depth(lane.queue.url)),
        ]);
        return {
          uptimeMs: Date.now() - startedAt,
          pollers: concurrency,
          queue: { name: sqs.queue.name, depth: queueDepth },
          dlq: { name: sqs.dlq.name, depth: dlqDepth },
          mapping: eventSource.stats,
          ...(demo ? { endpoints: endpointStats(demo.list) } : {}),
          ...(telemetry ? { handler: telemetry } : {}),
          lanes: [...lanes].map(([endpoint, lane], i) => ({
            endpoint,
            depth: laneDepths[i] ?? { visible: 0, inFlight: 0, delayed: 0 },
            maxInFlight: lane.eventSource.stats.maxInFlight,
          })),
        };
      },
      stopPolling,
      stop: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}
