/** Figure 2: 100 events, one endpoint answering in 1 s and the others at once; batch time against the 1 s limit. */

import type { Bundles } from '../bundles';
import type { EndpointFleet } from '../fleet';
import { RunnerHost } from '../hostProcess';
import { type BenchOptions, log, timedRun } from '../measure';
import { type Summary, summarize } from '../stats';
import { DEFAULT_CONNECTIONS, hostSpec } from '../subject';

export const SLOW_EVENTS = 100;
export const SLOW_DELAY_MS = 1000;
export const SLOW_TARGET_MS = 1250;

export interface SlowRow {
  id: string;
  label: string;
  ms: Summary;
  maxFailed: number;
}

export async function slowEndpoint(
  fleet: EndpointFleet,
  runners: RunnerHost[],
  bundles: Bundles,
  options: BenchOptions,
): Promise<SlowRow[]> {
  // The pool size decides this figure: beside the default, the handler with a pool as large as the batch (when the
  // default is smaller) or with half the batch (when it is not), to show what one wave more costs.
  const connections = DEFAULT_CONNECTIONS < SLOW_EVENTS ? SLOW_EVENTS : Math.floor(SLOW_EVENTS / 2);
  const variant = await RunnerHost.start(
    hostSpec(
      'handler',
      bundles,
      fleet,
      { ENDPOINT_MAX_CONNECTIONS: String(connections) },
      `ingest-fanout, ENDPOINT_MAX_CONNECTIONS=${connections}`,
    ),
  );
  const all = [runners[0]!, variant, ...runners.slice(1)];
  try {
    await fleet.reset();
    await fleet.delays(fleet.urls.map((_, i) => (i === 0 ? SLOW_DELAY_MS : 0)));
    const runs = new Map<string, { ms: number; failed: number }[]>(all.map((r) => [r.id, []]));
    for (const runner of all) await timedRun(runner, fleet, SLOW_EVENTS);
    for (let round = 0; round < options.runs; round++) {
      for (let k = 0; k < all.length; k++) {
        const runner = all[(round + k) % all.length]!;
        runs.get(runner.id)!.push(await timedRun(runner, fleet, SLOW_EVENTS));
      }
    }
    const rows = all.map((runner) => {
      const results = runs.get(runner.id)!;
      return {
        id: runner.id,
        label: runner.label,
        ms: summarize(results.map((r) => r.ms)),
        maxFailed: Math.max(...results.map((r) => r.failed)),
      };
    });
    log(`  ${rows.map((r) => `${r.id} ${r.ms.median.toFixed(0)} ms`).join(', ')}`);
    return rows;
  } finally {
    await variant.close();
  }
}
