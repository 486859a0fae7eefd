/** Figure 1: batch time for N events × 3 endpoints, the handler beside the peers and the floor, runs interleaved. */

import type { Bundles, HostKind } from '../bundles';
import type { EndpointFleet } from '../fleet';
import { RunnerHost } from '../hostProcess';
import { type BenchOptions, log, type RunResult, timedRun } from '../measure';
import { type Summary, summarize } from '../stats';
import { hostSpec, LOGS_ON_ENV, type Targets } from '../subject';
import type { Certificate } from '../tls';

/** Warm-ups use at most this many events: enough to open every pooled connection and warm the JIT. */
const WARMUP_EVENTS = 2000;
/** Larger batches get at most this many measured runs, to keep the whole bench near 10 minutes. */
const LARGE_RUNS = 3;
const PEERS = ['naive', 'powertools'];
const TLS_PEERS_DELAY_MS = 5;
/** Every runner, in table order: the handler first. */
export const KINDS: HostKind[] = ['handler', 'naive', 'powertools', 'floor-undici', 'floor-http'];

/** The handler with INFO logs and EMF metrics on, as serverless.yml deploys it: the row the targets are read from. */
export function deployedHandlerSpec(bundles: Bundles, targets: Targets) {
  return {
    ...hostSpec('handler', bundles, targets, LOGS_ON_ENV, 'ingest-fanout, INFO logs + metrics (as deployed)'),
    id: 'handler-logs',
  };
}

export interface RunnerCell {
  id: string;
  label: string;
  ms: Summary;
  /** Most records any measured run reported failed. */
  maxFailed: number;
  /** Runs in which the endpoints did not receive every POST although the runner reported success. */
  lostRuns: number;
  /** Most connections the runner had open to one endpoint during the warm-up (from cold pools, ≤ WARMUP_EVENTS events). */
  peakConnections: number;
  /** Runs in which the runner threw instead of answering. */
  errors: number;
  runs: RunResult[];
}

export interface ThroughputCell {
  events: number;
  delayMs: number;
  protocol: 'http' | 'https';
  runners: RunnerCell[];
}

export async function throughput(
  fleet: EndpointFleet,
  all: RunnerHost[],
  sizes: number[],
  delays: number[],
  options: BenchOptions,
  protocol: 'http' | 'https' = 'http',
): Promise<ThroughputCell[]> {
  const cells: ThroughputCell[] = [];
  const endpoints = fleet.urls.length;
  for (const events of sizes) {
    for (const delayMs of delays) {
      // Over https the peers' new TLS connection per request costs minutes: one cell (2,000 events, 5 ms) for them,
      // so that the full run stays under 15 minutes.
      const peersHere = protocol === 'http' || (events <= WARMUP_EVENTS && delayMs === TLS_PEERS_DELAY_MS);
      const runners = peersHere ? all : all.filter((r) => !PEERS.includes(r.id));
      await fleet.reset();
      await fleet.delays(fleet.urls.map(() => delayMs));
      const runs = new Map<string, RunResult[]>(runners.map((r) => [r.id, []]));
      const peaks = new Map<string, number>();
      // One warm-up per runner fills its connection pool and the JIT, as on a warm Lambda instance; it starts from
      // cold pools (the reset above), so it also shows how many connections the runner opens at most.
      for (const runner of runners) {
        await fleet.zero();
        await timedRun(runner, fleet, Math.min(events, WARMUP_EVENTS));
        peaks.set(runner.id, Math.max(...(await fleet.stats()).map((s) => s.peakNewConnections)));
      }
      const large = events > WARMUP_EVENTS;
      const rounds = large ? Math.min(options.runs, LARGE_RUNS) : options.runs;
      for (let round = 0; round < rounds; round++) {
        // Rotating the order spreads the machine's background noise evenly over the runners.
        for (let k = 0; k < runners.length; k++) {
          const runner = runners[(round + k) % runners.length]!;
          // The peers take several times longer on large batches (and fail records there): one run tells enough.
          if (large && round > 0 && PEERS.includes(runner.id)) continue;
          const result = await timedRun(runner, fleet, events);
          runs.get(runner.id)!.push(result);
        }
      }
      const cell: ThroughputCell = {
        events,
        delayMs,
        protocol,
        runners: runners.map((runner) => {
          const results = runs.get(runner.id)!;
          return {
            id: runner.id,
            label: runner.label,
            ms: summarize(results.map((r) => r.ms)),
            maxFailed: Math.max(...results.map((r) => r.failed)),
            lostRuns: results.filter((r) => r.failed === 0 && r.requests < events * endpoints).length,
            peakConnections: peaks.get(runner.id) ?? 0,
            errors: results.filter((r) => r.error).length,
            runs: results,
          };
        }),
      };
      cells.push(cell);
      log(
        `  ${events} events × ${endpoints} ${protocol} endpoints @ ${delayMs} ms: ${cell.runners
          .map((r) => `${r.id} ${r.ms.median.toFixed(0)} ms${r.maxFailed ? ` (${r.maxFailed} failed)` : ''}`)
          .join(', ')}`,
      );
    }
  }
  return cells;
}

/**
 * The same batch to https endpoints: TLS handshakes are what a pool saves and an unpooled client pays for every
 * request, so this cell is closer to production than plain http on loopback.
 */
export async function throughputTls(
  fleet: EndpointFleet,
  bundles: Bundles,
  cert: Certificate,
  sizes: number[],
  delays: number[],
  options: BenchOptions,
): Promise<ThroughputCell[]> {
  const runners: RunnerHost[] = [];
  const targets = fleet.tlsTargets(cert.certFile);
  try {
    runners.push(await RunnerHost.start(hostSpec('handler', bundles, targets)));
    runners.push(await RunnerHost.start(deployedHandlerSpec(bundles, targets)));
    for (const kind of KINDS.slice(1)) runners.push(await RunnerHost.start(hostSpec(kind, bundles, targets)));
    return await throughput(fleet, runners, sizes, delays, options, 'https');
  } finally {
    await Promise.all(runners.map((r) => r.close()));
  }
}
