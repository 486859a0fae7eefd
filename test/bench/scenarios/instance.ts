/**
 * Figure 7: what one warm instance sustains, and what a million events cost. The handler as deployed (INFO logs, EMF
 * metrics) gets batches of the deployed size (serverless.yml's batchSize) back to back, endpoints answering in 5 and
 * 50 ms. Lambda's CPU share at the deployed memory is emulated from the measurement: the batch's own CPU time is
 * stretched by 1 / share (a 512 MB function gets 512 / 1,769 of a vCPU), its waiting on the endpoints is not.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import type { Bundles } from '../bundles';
import type { EndpointFleet } from '../fleet';
import { RunnerHost } from '../hostProcess';
import { type BenchOptions, log, timedRun } from '../measure';
import { ROOT } from '../paths';
import { type Summary, summarize } from '../stats';
import { deployedHandlerSpec } from './throughput';

/** Lambda gives one full vCPU at 1,769 MB and CPU in proportion to memory below that. */
export const VCPU_MB = 1769;
export const INSTANCE_DELAYS_MS = [5, 50];
export const TARGET_RATES = [1000, 10_000];

export interface InstanceRow {
  delayMs: number;
  batch: number;
  runs: number;
  /** Batch time on this machine (handler call → answer). */
  wallMs: Summary;
  /** The handler process's CPU time per batch (user + system). */
  cpuMs: Summary;
  /** wall + cpu × (1/share − 1): the batch time at the deployed memory's CPU share. */
  emulatedMs: number;
  eventsPerS: number;
  /** maximumConcurrency needed per target rate (events/s), at least 2 (the event source mapping's minimum). */
  concurrency: { rate: number; instances: number }[];
  /** Log and metric output per batch, bytes (what CloudWatch Logs ingests, before Lambda's own START/END/REPORT). */
  logBytesPerBatch: number;
  failed: number;
}

export interface Instance {
  memoryMb: number;
  cpuShare: number;
  rows: InstanceRow[];
}

/** serverless.yml's default memorySize and batchSize, as a stage deploys them unless it overrides them. */
export function deployedSizing(): { memoryMb: number; batchSize: number } {
  const yml = parse(readFileSync(`${ROOT}serverless.yml`, 'utf8')) as {
    params: { default: { memorySize: number; batchSize: number } };
  };
  return { memoryMb: Number(yml.params.default.memorySize), batchSize: Number(yml.params.default.batchSize) };
}

export async function instance(fleet: EndpointFleet, bundles: Bundles, options: BenchOptions): Promise<Instance> {
  const { memoryMb, batchSize } = deployedSizing();
  const cpuShare = Math.min(1, memoryMb / VCPU_MB);
  const runs = options.quick ? 5 : 15;
  const host = await RunnerHost.start(deployedHandlerSpec(bundles, fleet));
  const rows: InstanceRow[] = [];
  try {
    for (const delayMs of INSTANCE_DELAYS_MS) {
      await fleet.reset();
      await fleet.delays(fleet.urls.map(() => delayMs));
      await timedRun(host, fleet, batchSize);
      const walls: number[] = [];
      const cpus: number[] = [];
      let failed = 0;
      const outputBefore = host.outputBytes;
      for (let i = 0; i < runs; i++) {
        const run = await timedRun(host, fleet, batchSize);
        walls.push(run.ms);
        cpus.push(run.cpuUs / 1000);
        failed = Math.max(failed, run.failed);
      }
      const wallMs = summarize(walls);
      const cpuMs = summarize(cpus);
      const emulatedMs = wallMs.median + cpuMs.median * (1 / cpuShare - 1);
      const eventsPerS = (batchSize * 1000) / emulatedMs;
      rows.push({
        delayMs,
        batch: batchSize,
        runs,
        wallMs,
        cpuMs,
        emulatedMs,
        eventsPerS,
        concurrency: TARGET_RATES.map((rate) => ({ rate, instances: Math.max(2, Math.ceil(rate / eventsPerS)) })),
        logBytesPerBatch: (host.outputBytes - outputBefore) / runs,
        failed,
      });
      log(
        `  instance @ ${delayMs} ms: ${wallMs.median.toFixed(0)} ms wall, ${cpuMs.median.toFixed(0)} ms CPU per ${batchSize} events → ${emulatedMs.toFixed(0)} ms at ${memoryMb} MB, ${eventsPerS.toFixed(0)} events/s`,
      );
    }
  } finally {
    await host.close();
  }
  return { memoryMb, cpuShare, rows };
}
