/** Figure 5: peak RSS of a fresh runner process that handles two 10,000-event batches (cold, then warm). */
import type { Bundles, HostKind } from '../bundles';
import type { EndpointFleet } from '../fleet';
import { RunnerHost } from '../hostProcess';
import { type BenchOptions, log } from '../measure';
import { type Summary, summarize } from '../stats';
import { hostSpec, LABELS } from '../subject';

export const MEMORY_EVENTS = 10_000;
export const MEMORY_DELAY_MS = 5;
export const MEMORY_TARGET_MIB = 256;

/** The flags Lambda's Node.js bootstrap passes for a function of `mb` MB (/var/runtime/bootstrap). */
export function lambdaHeapFlags(mb: number): string[] {
  const newSpace = Math.floor(mb / 10);
  return [`--max-semi-space-size=${Math.floor(newSpace / 2)}`, `--max-old-space-size=${mb - newSpace}`];
}

interface MemoryConfig {
  kind: HostKind;
  /** Lambda memory size whose heap flags the process gets; undefined: V8's defaults for this machine. */
  lambdaMb?: number;
  processes: number;
}

export interface MemoryRow {
  kind: HostKind;
  label: string;
  /** The heap limits: a Lambda memory size, or this machine's V8 defaults. */
  heap: string;
  /** Peak RSS (VmHWM), MiB, one value per fresh process. */
  peakMiB: Summary;
  /** RSS once the bundle is loaded, MiB. */
  baselineMiB: Summary;
  ms: Summary;
  maxFailed: number;
  payloadBytes: number;
  /** An invocation threw, or the process died (e.g. out of heap). */
  error?: string;
}

export async function memory(fleet: EndpointFleet, bundles: Bundles, options: BenchOptions): Promise<MemoryRow[]> {
  const configs: MemoryConfig[] = options.quick
    ? [{ kind: 'handler', lambdaMb: MEMORY_TARGET_MIB, processes: 1 }]
    : [
        { kind: 'handler', lambdaMb: MEMORY_TARGET_MIB, processes: 2 },
        { kind: 'handler', lambdaMb: 512, processes: 1 },
        { kind: 'handler', processes: 1 },
        { kind: 'naive', lambdaMb: 512, processes: 1 },
        { kind: 'powertools', lambdaMb: 512, processes: 1 },
        { kind: 'floor-undici', lambdaMb: 512, processes: 1 },
        { kind: 'floor-http', lambdaMb: 512, processes: 1 },
      ];
  const rows: MemoryRow[] = [];
  for (const config of configs) {
    const peaks: number[] = [];
    const baselines: number[] = [];
    const times: number[] = [];
    let maxFailed = 0;
    let payloadBytes = 0;
    const errors: string[] = [];
    for (let p = 0; p < config.processes; p++) {
      await fleet.reset();
      await fleet.delays(fleet.urls.map(() => MEMORY_DELAY_MS));
      const spec = hostSpec(config.kind, bundles, fleet);
      const host = await RunnerHost.start({
        ...spec,
        execArgv: config.lambdaMb ? lambdaHeapFlags(config.lambdaMb) : [],
      });
      try {
        for (let i = 0; i < 2; i++) {
          const run = await host.run(MEMORY_EVENTS);
          times.push(run.ms);
          maxFailed = Math.max(maxFailed, run.failed);
          payloadBytes = run.payloadBytes;
          if (run.error) errors.push(run.error);
        }
        const mem = await host.memory();
        peaks.push(mem.peakRssKiB / 1024);
        baselines.push(mem.baselineRssKiB / 1024);
      } catch (error) {
        // A heap limit too small ends the process (V8 aborts with "heap out of memory"): that is the finding.
        errors.push(error instanceof Error ? error.message : String(error));
      } finally {
        await host.close();
      }
    }
    const row: MemoryRow = {
      kind: config.kind,
      label: LABELS[config.kind],
      heap: config.lambdaMb ? `Lambda ${config.lambdaMb} MB flags` : "V8 defaults (this machine's memory)",
      peakMiB: summarize(peaks),
      baselineMiB: summarize(baselines),
      ms: summarize(times),
      maxFailed,
      payloadBytes,
      ...(errors.length > 0 ? { error: errors[0]! } : {}),
    };
    rows.push(row);
    log(
      `  ${row.kind}, ${row.heap}: peak RSS ${row.peakMiB.median.toFixed(0)} MiB (after load ${row.baselineMiB.median.toFixed(0)} MiB)${row.error ? `; ${row.error.split('\n')[0]}` : ''}`,
    );
  }
  return rows;
}
