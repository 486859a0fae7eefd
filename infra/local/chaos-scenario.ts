import type { DemoEndpoint, FaultKind, FaultPlan } from './demo-endpoints';
import { type DrainReport, DrainWatch } from './drain';
import type { EventSourceStats } from './event-source';
import { interleave, malformedMessages, newRunId, sendMessages, validMessages } from './events';
import { HandlerOutput, type HandlerTelemetry } from './handler-output';
import { startLocalStack } from './stack';

/**
 * Handler settings of the chaos run. DELIVERY_TIMEOUT_MS is longer than the time an invocation has for deliveries
 * (3000 − 500 ms), so a hanging endpoint is cut by the invocation deadline, not by its own timeout.
 */
export const CHAOS_HANDLER_ENV: Readonly<Record<string, string>> = {
  DELIVERY_TIMEOUT_MS: '3000',
  DEADLINE_MARGIN_MS: '500',
  DELIVERY_MAX_ATTEMPTS: '3',
  DELIVERY_RETRY_BASE_MS: '50',
  DELIVERY_RETRY_MAX_MS: '400',
  RETRY_BASE_DELAY_S: '1',
  RETRY_MAX_DELAY_S: '3',
  CIRCUIT_BREAKER_THRESHOLD: '10',
  CIRCUIT_BREAKER_HALF_OPEN_MS: '500',
  POWERTOOLS_LOG_LEVEL: 'WARN',
  POWERTOOLS_METRICS_DISABLED: 'false',
  POWERTOOLS_TRACE_ENABLED: 'false',
};
export const CHAOS_FUNCTION_TIMEOUT_MS = 3000;

export interface ChaosOptions {
  events: number;
  /** Malformed messages mixed in. Default events / 20 (at least 10). */
  malformed?: number;
  /** Share of endpoint requests that fail (5xx, reset, slow, now and then a hang). Default 0.1. */
  faultRate?: number;
  /** Give up draining after this long. Default 10 min. */
  timeoutMs?: number;
  /** Pollers. Default 8. */
  concurrency?: number;
  /** SQS's in-flight limit per queue, scaled down (see SqsEventSource). Default none. */
  inflightCeiling?: number;
  /** One lane per endpoint (see LocalStackOptions.lanes); on unless false. */
  lanes?: boolean;
  /** Where the handler's log lines go: 'discard' (default) or a file path. Its metrics are tallied either way. */
  handlerLog?: string;
  onProgress?: (report: DrainReport) => void;
  /** Each change of phase, as it happens. */
  onPhase?: (atMs: number, what: string) => void;
}

export interface ChaosReport {
  events: number;
  malformed: number;
  faultRate: number;
  elapsedMs: number;
  drain: DrainReport;
  /** Faults the endpoints injected, by kind, over all endpoints. */
  faults: Record<FaultKind, number>;
  /** Requests the endpoints received. */
  requests: number;
  /** Calls to the quarantine queue refused during its outage. */
  quarantineRefused: number;
  phases: { atMs: number; what: string }[];
  mapping: EventSourceStats;
  handler: HandlerTelemetry;
}

function baseline(rate: number): FaultPlan {
  // One fault in twenty is a hang: each one holds a whole batch until the invocation deadline.
  const kinds: FaultKind[] = [];
  for (let i = 0; i < 19; i++) kinds.push((['error', 'reset', 'slow'] as const)[i % 3]!);
  kinds.push('hang');
  return { rate, kinds, slowMs: [100, 600] };
}

/**
 * Events through the local pipeline (real handler, local SQS, three demo endpoints) while things break: endpoints
 * answer 5xx, reset connections, answer slowly or hang; one endpoint is slow all along; the quarantine queue refuses
 * every call for a while; one endpoint stalls until invocations run into their deadline. Then it waits until every
 * valid event has reached every endpoint and every malformed one the dead-letter queue.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const faultRate = options.faultRate ?? 0.1;
  const malformedCount = options.malformed ?? Math.max(10, Math.floor(options.events / 20));
  const output = new HandlerOutput({ destination: options.handlerLog ?? 'discard' });
  output.install();
  const phases: { atMs: number; what: string }[] = [];
  const started = Date.now();
  const phase = (what: string) => {
    const entry = { atMs: Date.now() - started, what };
    phases.push(entry);
    options.onPhase?.(entry.atMs, what);
  };

  const stack = await startLocalStack({
    faults: baseline(faultRate),
    faultProxy: true,
    // As a deployed stage (serverless.yml): 5 receives let a busy 2-core machine dead-letter a valid event mid-stall.
    maxReceiveCount: 10,
    functionTimeoutMs: CHAOS_FUNCTION_TIMEOUT_MS,
    concurrency: options.concurrency ?? 8,
    ...(options.inflightCeiling ? { inflightCeiling: options.inflightCeiling } : {}),
    lanes: options.lanes !== false,
    batchSize: 10,
    env: { ...CHAOS_HANDLER_ENV },
  });
  const endpoints = stack.demo!.list;
  const byName = (name: string): DemoEndpoint => endpoints.find((endpoint) => endpoint.name === name)!;
  const proxy = stack.proxy!;
  let phaseTimer: NodeJS.Timeout | undefined;
  try {
    const slow = byName('search');
    slow.setFaults({ ...baseline(faultRate), latencyMs: [10, 80] });
    phase('search answers 10-80 ms late on every request (a slow endpoint), for the whole run');
    proxy.fail(['SendMessageBatch', 'SendMessage']);
    phase('quarantine queue down: SendMessage(Batch) answered 503');

    const run = newRunId();
    const valid = validMessages(options.events, run);
    const messages = interleave(valid, malformedMessages(malformedCount, run));
    const watch = new DrainWatch(stack, messages);

    // The outages end on what the pipeline has been through (30 refused quarantine calls, 100 hung requests), with
    // a time bound in case it never gets there.
    const stalled = byName('audit');
    let quarantineDownSince = Date.now();
    let stallSince: number | undefined;
    let stallHangsAtStart = 0;
    let stallDone = false;
    phaseTimer = setInterval(() => {
      if (quarantineDownSince > 0 && (proxy.stats.refused >= 30 || Date.now() - quarantineDownSince > 45_000)) {
        proxy.restore();
        quarantineDownSince = 0;
        phase(`quarantine queue back after ${proxy.stats.refused} refused calls`);
      }
      if (!stallDone && stallSince === undefined && stalled.stats.unique >= valid.length / 4) {
        stallSince = Date.now();
        stallHangsAtStart = stalled.stats.faults.hang;
        stalled.setFaults({ rate: 1, kinds: ['hang'] });
        phase('audit stalls: every request hangs, invocations run into their deadline');
      }
      if (stallSince !== undefined && !stallDone) {
        const hangs = stalled.stats.faults.hang - stallHangsAtStart;
        if (hangs >= 100 || Date.now() - stallSince > 10_000) {
          stalled.setFaults(baseline(faultRate));
          stallDone = true;
          phase(`audit back after ${hangs} hung requests`);
        }
      }
    }, 50);

    await sendMessages(stack.sqs.client, stack.sqs.queue.url, messages);
    phase(`sent ${valid.length} valid + ${malformedCount} malformed messages`);
    const drain = await watch.waitUntilDrained({
      timeoutMs: options.timeoutMs ?? 600_000,
      intervalMs: 500,
      ...(options.onProgress ? { onTick: options.onProgress } : {}),
    });
    phase(drain.drained ? 'drained' : 'gave up draining');
    clearInterval(phaseTimer);
    // Running invocations finish (and write their metrics) before the figures are read.
    await stack.stop();

    const faults: Record<FaultKind, number> = { error: 0, reset: 0, slow: 0, hang: 0 };
    let requests = 0;
    for (const endpoint of endpoints) {
      const stats = endpoint.stats;
      requests += stats.requests;
      for (const kind of Object.keys(faults) as FaultKind[]) faults[kind] += stats.faults[kind];
    }
    return {
      events: valid.length,
      malformed: malformedCount,
      faultRate,
      elapsedMs: Date.now() - started,
      drain,
      faults,
      requests,
      quarantineRefused: proxy.stats.refused,
      phases,
      mapping: stack.eventSource.stats,
      handler: structuredClone(output.telemetry),
    };
  } finally {
    clearInterval(phaseTimer);
    await stack.stop();
    await output.uninstall();
  }
}
